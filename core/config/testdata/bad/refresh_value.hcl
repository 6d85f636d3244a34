role "web" {
  plugin  = "static"
  refresh = "rolling"
}
