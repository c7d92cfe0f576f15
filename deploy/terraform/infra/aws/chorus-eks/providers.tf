provider "aws" {
  region = var.region

  default_tags {
    tags = {
      "chorus/cluster" = var.name
      "managed-by"     = "terraform"
    }
  }
}

# Both Kubernetes providers talk to the new cluster with a token from `aws eks get-token` (AWS CLI v2 on the machine
# running terraform), fetched on every run, so the configuration never holds a long-lived credential.
provider "kubernetes" {
  host                   = module.eks.cluster_endpoint
  cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)

  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
  }
}

provider "helm" {
  kubernetes = {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)

    exec = {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
    }
  }
}
