role "web" {
  plugin = "static"
  healthcheck {
    interval = "5s"
  }
}

service "web" {
}
