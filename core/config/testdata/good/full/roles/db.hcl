role "db" {
  plugin = "db"
  scale {
    target = 0.6
  }
  count { max = 3 }
}

role "cache" {
  plugin  = "static"
  refresh = false
  scale {
    metric    = "load"
    target    = 0.5
    tolerance = 0.2
  }
  count {
    min = 1
    max = 2
  }
  register { balancer = "list" }
  config {
    root = "/srv/cache"
  }
}
