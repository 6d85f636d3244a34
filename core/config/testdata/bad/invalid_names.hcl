role "Web Server" {
  plugin = "static"
}

role "" {
  plugin = "static"
}
