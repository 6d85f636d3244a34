role "web" {
  plugin = "nginx"
}

role "api" {
  plugin = "broken"
}

role "worker" {
  plugin = "Not A Name"
}
