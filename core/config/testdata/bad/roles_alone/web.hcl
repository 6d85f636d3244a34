role "web" {
  plugin = "lamp"
  register { balancer = "anything" }
  config {
    document_root = "file://site"
    database      = role.db.endpoints.postgres
    backend "main" {
      host = "10.0.0.1"
    }
  }
}
