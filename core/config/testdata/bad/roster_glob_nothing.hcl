cluster = "demo"
roles   = ["nothing/*.hcl", "also-nothing/*.hcl"]
