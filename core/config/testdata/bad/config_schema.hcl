role "web" {
  plugin = "lamp"
  config {
    memcached_mb  = "lots"
    document_roo  = "file://site"
    modules       = "rewrite"

    vhost {
      aliases = ["www.example.org"]
    }
    vhost {
      server_name = "second.example.org"
    }
    package { name = "a" }
    package { name = "b" }
    package { name = "c" }
    package { name = "d" }
    unknown {}
  }
}
