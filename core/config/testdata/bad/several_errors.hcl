role "web" {
  plugin = "static"
  count {
    min = 4
    max = 2
  }
  scale {
    up_above   = 0.1
    down_below = 0.9
    cooldown_up = "soon"
  }
  health { interval = "5x" }
  config {
    port = "eighty"
  }
}

role "web" {
  plugin = "static"
}
