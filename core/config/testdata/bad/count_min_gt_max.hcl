role "web" {
  plugin = "static"
  count {
    min = 5
    max = 2
  }
}
