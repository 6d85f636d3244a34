role "api" {
  plugin = "static"
  config {
    port = -1 + "x"
  }
}
