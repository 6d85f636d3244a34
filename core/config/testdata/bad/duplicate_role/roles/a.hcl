role "web" {
  plugin = "static"
}
