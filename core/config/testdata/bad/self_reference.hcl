role "web" {
  plugin = "lamp"
  config {
    document_root = "file://site"
    database      = role.web.endpoints.http
    modules       = [role, var.x]
    backend "main" {
      host = role["db"].endpoints.postgres
    }
  }
}
