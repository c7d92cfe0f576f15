# Chorus on GKE: the network with Cloud NAT, a private zonal cluster with its node pools (GPU pools with GKE's
# managed NVIDIA driver), the static IP, the add-ons and Chorus itself (chorus.tf). One `terraform apply`:
#
#   terraform apply -var-file=../../../gcp-terraform.tfvars -var "chorus_api_key=$KEY"

# Every variable, validated, and the chart's values built from them (no provider: tested offline).
module "chorus_values" {
  source = "../../../modules/chorus-values"

  platform                       = "gcp"
  name                           = var.name
  region                         = var.region
  kubernetes_version             = var.kubernetes_version
  project_id                     = var.project_id
  zone                           = var.zone
  gke_admin_users                = var.gke_admin_users
  node_pools                     = var.node_pools
  control_plane_allowed_cidrs    = var.control_plane_allowed_cidrs
  enable_ingress                 = var.enable_ingress
  ingress_route                  = var.ingress_route
  ingress_static_ip_name         = var.ingress_static_ip_name
  ingress_use_existing_static_ip = var.ingress_use_existing_static_ip
  image_registry                 = var.image_registry
  image_pull_secret              = var.image_pull_secret
  release_tag                    = var.release_tag
  release_version                = var.release_version
  namespace                      = var.namespace
  release_name                   = var.release_name
  workers                        = var.workers
  enable_hot_reload              = var.enable_hot_reload
  artifact_bucket                = var.artifact_bucket
  enable_cluster_autoscaler      = var.enable_cluster_autoscaler
  enable_pod_autoscaler          = var.enable_pod_autoscaler
  enable_metrics                 = var.enable_metrics
  license_mode                   = var.license_mode
  license_seed                   = var.license_seed
  license_trusted_keys           = var.license_trusted_keys

  # The chart creates the pods' ServiceAccount bound to this Google service account (Workload Identity, chorus.tf).
  service_account_annotations = var.enable_hot_reload ? { "iam.gke.io/gcp-service-account" = google_service_account.chorus[0].email } : {}
}

locals {
  subnet         = "${var.name}-nodes"
  pods_range     = "${var.name}-pods"
  services_range = "${var.name}-services"
}

# --- network: one subnet for the nodes with secondary ranges for pods and services, Cloud NAT for egress -----------

module "network" {
  #checkov:skip=CKV_TF_1:Registry module pinned to one exact version (the registry serves a published version from a fixed commit); a git commit source would lose the registry version and its changelog.
  source  = "terraform-google-modules/network/google"
  version = "18.1.0"

  project_id   = var.project_id
  network_name = "${var.name}-vpc"

  subnets = [{
    subnet_name           = local.subnet
    subnet_ip             = "10.10.0.0/20"
    subnet_region         = var.region
    subnet_private_access = "true"
    subnet_flow_logs      = "true"
  }]
  secondary_ranges = {
    (local.subnet) = [
      { range_name = local.pods_range, ip_cidr_range = "10.20.0.0/14" },
      { range_name = local.services_range, ip_cidr_range = "10.24.0.0/20" },
    ]
  }
}

resource "google_compute_router" "nat" {
  name    = "${var.name}-router"
  region  = var.region
  network = module.network.network_self_link
}

# Private nodes pull images and reach the bucket's public endpoint through NAT.
resource "google_compute_router_nat" "nat" {
  name                               = "${var.name}-nat"
  router                             = google_compute_router.nat.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# --- the cluster -------------------------------------------------------------------------------------------------

module "gke" {
  #checkov:skip=CKV_TF_1:Registry module pinned to one exact version (the registry serves a published version from a fixed commit); a git commit source would lose the registry version and its changelog.
  source  = "terraform-google-modules/kubernetes-engine/google//modules/private-cluster"
  version = "44.2.0"

  project_id         = var.project_id
  name               = var.name
  region             = var.region
  regional           = false
  zones              = [var.zone]
  kubernetes_version = var.kubernetes_version
  release_channel    = "REGULAR"

  network           = module.network.network_name
  subnetwork        = local.subnet
  ip_range_pods     = local.pods_range
  ip_range_services = local.services_range

  # Nodes without public IPs; the control plane's public endpoint only for control_plane_allowed_cidrs.
  enable_private_nodes   = true
  master_ipv4_cidr_block = "172.16.0.0/28"
  # 0.0.0.0/0 among them: no authorized networks block, the endpoint is open to anyone with credentials.
  master_authorized_networks = contains(var.control_plane_allowed_cidrs, "0.0.0.0/0") ? [] : [
    for c in var.control_plane_allowed_cidrs : { cidr_block = c, display_name = "terraform and kubectl" }
  ]

  # The control plane reaches the add-ons' webhooks and KEDA's metrics API server on the private nodes.
  add_master_webhook_firewall_rules = true
  firewall_inbound_ports            = ["6443", "8443", "9443"]

  http_load_balancing        = true # the GCE Ingress controller
  horizontal_pod_autoscaling = true # KEDA drives HPAs
  identity_namespace         = "enabled"
  deletion_protection        = false # `terraform destroy` removes the cluster (see docs/operations.md, Terraform)

  remove_default_node_pool = true
  create_service_account   = true
  grant_registry_access    = true

  # From var.node_pools: autoscaling between min_count and max_count (enable_cluster_autoscaler), accelerator pools
  # with gpu_driver_version LATEST (GKE installs the driver and runs the device plugin) and labelled
  # nvidia.com/gpu.present=true.
  node_pools              = module.chorus_values.gke_node_pools
  node_pools_labels       = module.chorus_values.gke_node_pools_labels
  node_pools_oauth_scopes = { all = ["https://www.googleapis.com/auth/cloud-platform"] }

  depends_on = [google_compute_router_nat.nat]
}

# Kubernetes Engine Admin for gke_admin_users (plain e-mail addresses are users).
resource "google_project_iam_member" "gke_admins" {
  for_each = toset(var.gke_admin_users)

  project = var.project_id
  role    = "roles/container.admin"
  member  = strcontains(each.value, ":") ? each.value : "user:${each.value}"
}

# --- the Ingress' global static IP ---------------------------------------------------------------------------------

resource "google_compute_global_address" "ingress" {
  count = var.enable_ingress && !var.ingress_use_existing_static_ip ? 1 : 0
  name  = module.chorus_values.ingress_static_ip_name
}

data "google_compute_global_address" "ingress" {
  count = var.enable_ingress && var.ingress_use_existing_static_ip ? 1 : 0
  name  = module.chorus_values.ingress_static_ip_name
}

locals {
  ingress_address = (!var.enable_ingress ? ""
    : var.ingress_use_existing_static_ip ? data.google_compute_global_address.ingress[0].address
  : google_compute_global_address.ingress[0].address)
}
