role "none" {
  plugin = "static"
  count { max = 3 }
  scale {
    metric = "load"
  }
}

role "half" {
  plugin = "static"
  count { max = 3 }
  scale {
    up_above = 0.8
  }
}

role "target" {
  plugin = "static"
  count { max = 3 }
  scale {
    target    = 0
    tolerance = 1.5
  }
}

role "fixed" {
  plugin = "static"
  count {
    min = 2
    max = 2
  }
  scale {
    target = 0.5
  }
}
