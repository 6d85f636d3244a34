cluster    = "demo"
data_dir   = "state"
spares     = 2
roles      = ["roles/*.hcl", "roles/web.hcl"]
plugin_dir = "/opt/roster/plugins"

plugin "lamp" {
  checksum = "sha256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
}

queue "sqs" {
  region   = "us-east-1"
  endpoint = "http://127.0.0.1:4566"
}

provider "local" {
  boot_delay   = "1500ms"
  max_machines = 10
}

balancer "haproxy" "front" {
  frontend = "127.0.0.1:8080"
}

balancer "file" "list" {
  path = "servers.txt"
}

logs {
  destination = "file://logs"
}

api {
  address = "127.0.0.1:9090"
}

agent {
  spare_heartbeat = "10s"
}
