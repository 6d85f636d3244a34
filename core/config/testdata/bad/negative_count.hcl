role "web" {
  plugin = "static"
  count {
    min = -1
    max = -3
  }
}
