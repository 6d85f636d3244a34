roles = ["roles/*.hcl"]

balancer "haproxy" "front" {
  frontend = "127.0.0.1:8080"
}

balancer "file" "list" {}
