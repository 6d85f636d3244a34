role "a" {
  plugin = "lamp"
  config {
    document_root = "file://a"
    database      = role.b.endpoints.http
    backend "main" {
      host = "10.0.0.1"
    }
  }
}

role "b" {
  plugin = "lamp"
  config {
    document_root = "file://b"
    database      = role.c.endpoints.http
    backend "main" {
      host = "10.0.0.1"
    }
  }
}

role "c" {
  plugin = "lamp"
  config {
    document_root = "file://c"
    database      = role.a.endpoints.http
    backend "main" {
      host = "10.0.0.1"
    }
  }
}
