role "web" {
  plugin = "static"
  plugin = "static"
  count { min = 1 }
  count { min = 2 }
  config {}
  config {}
}
