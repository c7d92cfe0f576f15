# Chorus on EKS: the network, the cluster with its node groups, the IAM roles for service accounts (IRSA), the
# add-ons (addons.tf) and Chorus itself (chorus.tf). One `terraform apply` creates all of it:
#
#   terraform apply -var-file=../../../aws-terraform.tfvars -var "chorus_api_key=$KEY"

# Every variable, validated, and the chart's values built from them (no provider: tested offline).
module "chorus_values" {
  source = "../../../modules/chorus-values"

  platform                    = "aws"
  name                        = var.name
  region                      = var.region
  kubernetes_version          = var.kubernetes_version
  vpc_cidr                    = var.vpc_cidr
  eks_admin_users             = var.eks_admin_users
  node_groups                 = var.node_groups
  control_plane_allowed_cidrs = var.control_plane_allowed_cidrs
  enable_ingress              = var.enable_ingress
  ingress_route               = var.ingress_route
  certificate_arn             = var.certificate_arn
  image_registry              = var.image_registry
  image_pull_secret           = var.image_pull_secret
  release_tag                 = var.release_tag
  release_version             = var.release_version
  namespace                   = var.namespace
  release_name                = var.release_name
  workers                     = var.workers
  enable_hot_reload           = var.enable_hot_reload
  artifact_bucket             = var.artifact_bucket
  enable_cluster_autoscaler   = var.enable_cluster_autoscaler
  enable_pod_autoscaler       = var.enable_pod_autoscaler
  enable_metrics              = var.enable_metrics
  license_mode                = var.license_mode
  license_seed                = var.license_seed
  license_trusted_keys        = var.license_trusted_keys

  # The chart creates the pods' ServiceAccount with this role (IRSA, bound to that name in chorus_irsa below).
  service_account_annotations = var.enable_hot_reload ? { "eks.amazonaws.com/role-arn" = module.chorus_irsa[0].arn } : {}
}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Only the first three zones are used (slice below, names in order); a zone AWS adds later sorts after them and changes nothing. Naming zones would break regions whose zone letters differ per account.
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

locals {
  azs = slice(data.aws_availability_zones.available.names, 0, 3)
}

# --- network: three private subnets for the nodes behind one NAT gateway, three public ones for the ALB -----------

module "vpc" {
  #checkov:skip=CKV_TF_1:Registry module pinned to one exact version (the registry serves a published version from a fixed commit); a git commit source would lose the registry version and its changelog.
  source  = "terraform-aws-modules/vpc/aws"
  version = "6.6.0"

  name = var.name
  cidr = var.vpc_cidr
  azs  = local.azs

  private_subnets = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets  = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, 48 + i)]

  enable_nat_gateway   = true
  single_nat_gateway   = true
  enable_dns_hostnames = true

  # The AWS Load Balancer Controller puts internet-facing ALBs in the public subnets, internal ones in the private.
  public_subnet_tags  = { "kubernetes.io/role/elb" = 1 }
  private_subnet_tags = { "kubernetes.io/role/internal-elb" = 1 }

  enable_flow_log                      = true
  create_flow_log_cloudwatch_log_group = true
  create_flow_log_cloudwatch_iam_role  = true
}

# --- the cluster -------------------------------------------------------------------------------------------------

module "eks" {
  #checkov:skip=CKV_TF_1:Registry module pinned to one exact version (the registry serves a published version from a fixed commit); a git commit source would lose the registry version and its changelog.
  source  = "terraform-aws-modules/eks/aws"
  version = "21.19.0"

  name               = var.name
  kubernetes_version = var.kubernetes_version

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  # terraform (helm and kubernetes providers) and kubectl reach the API from outside the VPC.
  endpoint_public_access       = true
  endpoint_public_access_cidrs = var.control_plane_allowed_cidrs

  # The identity running terraform is a cluster admin (it installs the charts); so are eks_admin_users.
  enable_cluster_creator_admin_permissions = true
  access_entries = {
    for arn in var.eks_admin_users : replace(arn, "/[^A-Za-z0-9_-]/", "-") => {
      principal_arn = arn
      policy_associations = {
        admin = {
          policy_arn   = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
          access_scope = { type = "cluster" }
        }
      }
    }
  }

  addons = {
    coredns    = {}
    kube-proxy = {}
    vpc-cni = {
      before_compute = true
    }
    # Volumes for the license proxy's PersistentVolumeClaim (StorageClass gp3 in chorus.tf).
    aws-ebs-csi-driver = {
      service_account_role_arn = module.ebs_csi_irsa.arn
    }
  }

  # From var.node_groups: NVIDIA groups labelled nvidia.com/gpu.present=true; encrypted gp3 root volumes; IMDSv2.
  eks_managed_node_groups = module.chorus_values.eks_managed_node_groups
}

# --- IAM roles for service accounts ------------------------------------------------------------------------------

module "ebs_csi_irsa" {
  #checkov:skip=CKV_TF_1:Registry module pinned to one exact version (the registry serves a published version from a fixed commit); a git commit source would lose the registry version and its changelog.
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts"
  version = "6.5.0"

  name                  = "${var.name}-ebs-csi"
  attach_ebs_csi_policy = true

  oidc_providers = {
    this = {
      provider_arn               = module.eks.oidc_provider_arn
      namespace_service_accounts = ["kube-system:ebs-csi-controller-sa"]
    }
  }
}

module "cluster_autoscaler_irsa" {
  #checkov:skip=CKV_TF_1:Registry module pinned to one exact version (the registry serves a published version from a fixed commit); a git commit source would lose the registry version and its changelog.
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts"
  version = "6.5.0"
  count   = var.enable_cluster_autoscaler ? 1 : 0

  name                             = "${var.name}-cluster-autoscaler"
  attach_cluster_autoscaler_policy = true
  cluster_autoscaler_cluster_names = [module.eks.cluster_name]

  oidc_providers = {
    this = {
      provider_arn               = module.eks.oidc_provider_arn
      namespace_service_accounts = ["kube-system:cluster-autoscaler"]
    }
  }
}

module "load_balancer_controller_irsa" {
  #checkov:skip=CKV_TF_1:Registry module pinned to one exact version (the registry serves a published version from a fixed commit); a git commit source would lose the registry version and its changelog.
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts"
  version = "6.5.0"
  count   = var.enable_ingress ? 1 : 0

  name                                   = "${var.name}-aws-lb-controller"
  attach_load_balancer_controller_policy = true

  oidc_providers = {
    this = {
      provider_arn               = module.eks.oidc_provider_arn
      namespace_service_accounts = ["kube-system:aws-load-balancer-controller"]
    }
  }
}

# The Chorus pods' role: list, read, write and delete under the artifact bucket, nothing else.
module "chorus_irsa" {
  #checkov:skip=CKV_TF_1:Registry module pinned to one exact version (the registry serves a published version from a fixed commit); a git commit source would lose the registry version and its changelog.
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts"
  version = "6.5.0"
  count   = var.enable_hot_reload ? 1 : 0

  name                 = "${var.name}-chorus-artifacts"
  create_inline_policy = true
  inline_policy_permissions = {
    list = {
      actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
      resources = [aws_s3_bucket.artifacts[0].arn]
    }
    objects = {
      actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
      resources = ["${aws_s3_bucket.artifacts[0].arn}/*"]
    }
  }

  oidc_providers = {
    this = {
      provider_arn               = module.eks.oidc_provider_arn
      namespace_service_accounts = ["${var.namespace}:${module.chorus_values.service_account_name}"]
    }
  }
}
