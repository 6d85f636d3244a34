cluster  = "my cluster!"
data_dir = ""
roles    = ["roles/[.hcl", 42]

queue "sqs" {
  region   = "us-east-1"
  endpoint = "127.0.0.1:4566"
  bucket   = "x"
}

logs {
  destination = "ftp://example.org/logs"
}

api {
  address = "localhost"
}

agent {
  spare_heartbeat = "0s"
  heartbeat       = "5s"
}

services "web" {
}
