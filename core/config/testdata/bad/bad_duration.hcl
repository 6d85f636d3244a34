role "web" {
  plugin = "static"
  health {
    interval = "5 seconds"
    timeout  = 2
  }
  provision {
    timeout = "-1m"
  }
  drain {
    timeout = "forever"
  }
  scale {
    target = 0.5
    window = "0s"
  }
}
