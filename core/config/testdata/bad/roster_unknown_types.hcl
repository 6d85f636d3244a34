roles = []

queue "rabbitmq" {}

provider "gcp" {
  project = "x"
}

balancer "nginx" "front" {}
