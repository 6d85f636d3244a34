role "web" {
  plugin = "lamp"
  config {
    document_root = "file://site"
    database      = role.cache.endpoints.memcached
    backend "main" {
      host = role.db.endpoints.postgres
    }
    backend "other" {
      host = role.db.address
    }
  }
}

role "db" {
  plugin = "db"
}
