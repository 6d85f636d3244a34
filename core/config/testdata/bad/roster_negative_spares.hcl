cluster = "demo"
roles   = []
spares  = -1

provider "local" {
  max_machines = -2
  boot_delay   = "-5s"
}
