role "web" {
  plugin = "static"
  health {
    interval        = "10s"
    timeout         = "20s"
    unhealthy_after = 0
    lost_after      = "5s"
  }
}
