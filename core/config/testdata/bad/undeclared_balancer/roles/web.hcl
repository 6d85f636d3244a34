role "web" {
  plugin = "static"
  register {
    balancer = "back"
    endpoint = "http"
  }
}

role "api" {
  plugin = "static"
  register {
    endpoint = "http"
  }
}
