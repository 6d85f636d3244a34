role "web" {
  plugin = "static"
  reuse  = "sometimes"
  count {
    min = "two"
    max = 1.5
  }
  scale {
    up_above   = "high"
    down_below = 0.2
  }
  health {
    unhealthy_after = [3]
  }
}
