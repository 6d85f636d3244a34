role "web" {
  plugin = "static"
  count {
    min = 1
    max = 4
  }
  scale {
    metric     = "load"
    up_above   = 0.25
    down_below = 0.75
  }
}
