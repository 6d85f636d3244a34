role "web" {
  plugin = "static"
  count {
    min = 1
    max = 4
  }
  scale {
    target     = 0.6
    up_above   = 0.8
    down_below = 0.2
  }
}
