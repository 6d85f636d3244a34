role "few" {
  plugin = "lamp"
  config {
    document_root = "file://site"
  }
}

role "many" {
  plugin = "lamp"
  config {
    document_root = "file://site"
    backend "a" { host = "10.0.0.1" }
    backend "b" { host = "10.0.0.2" }
    backend "c" { host = "10.0.0.3" }
    backend "a" { host = "10.0.0.4" }
  }
}

role "nolabel" {
  plugin = "static"
  config {
    port = 8080
  }
}

role "empty" {
  plugin = "lamp"
}
