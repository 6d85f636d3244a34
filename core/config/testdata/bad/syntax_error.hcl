role "web" {
  plugin = "static"
  count {
    min = 2
    max = = 4
  }
}
