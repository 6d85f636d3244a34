role "web" {
  plugin = "static"
  count {
    min = var.min
    max = 4
  }
  register {
    balancer = role.db.name
  }
}
