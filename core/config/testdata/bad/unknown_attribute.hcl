role "web" {
  plugn = "static"
  count {
    min     = 1
    maximum = 3
  }
}
