# A second web, copied from a.hcl and never renamed.
role "web" {
  plugin = "static"
  count { max = 4 }
}

role "db" {
  plugin = "db"
}

role "db" {
  plugin = "db"
}
