# Every variable of the two root configurations (infra/aws/chorus-eks, infra/gcp/chorus-gke) but the API keys, with
# all of their validations: the roots declare the same names and types and pass them here unchanged, so a bad value
# is refused at `terraform plan` with the message below, before anything is created.
#
# Terraform 1.11 evaluates both sides of `&&` and `||`: conditions use try()/can() where one side could fail.

# --- set by the root configuration -------------------------------------------------------------------------------

variable "platform" {
  description = "Where the cluster runs: `aws` (EKS) or `gcp` (GKE). Set by the root configuration, not in tfvars."
  type        = string

  validation {
    condition     = contains(["aws", "gcp"], var.platform)
    error_message = "platform must be \"aws\" or \"gcp\"."
  }
}

variable "service_account_annotations" {
  description = "Annotations of the ServiceAccount the Chorus pods run as: the workload identity the root made for the artifact bucket (`eks.amazonaws.com/role-arn` or `iam.gke.io/gcp-service-account`). Set by the root configuration, not in tfvars."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.service_account_annotations) : contains(["eks.amazonaws.com/role-arn", "iam.gke.io/gcp-service-account"], k)])
    error_message = "service_account_annotations may only hold eks.amazonaws.com/role-arn (IRSA) or iam.gke.io/gcp-service-account (GKE Workload Identity)."
  }
}

# --- both platforms ------------------------------------------------------------------------------------------------

variable "name" {
  description = "Name of the cluster; also the prefix of every cloud resource made for it (network, node groups, bucket, IAM roles, static IP)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "name must be 3 to 24 characters of lowercase letters, digits and '-', start with a letter and not end with '-' (it prefixes cloud resource names, which have tighter limits)."
  }
}

variable "region" {
  description = "Cloud region, e.g. `us-west-2` (AWS) or `us-central1` (GCP)."
  type        = string

  validation {
    condition     = can(regex(var.platform == "aws" ? "^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$" : "^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a region name of the platform, e.g. us-west-2 on AWS or us-central1 on GCP."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the control plane and the nodes, e.g. `1.33`. The chart needs 1.31 or later."
  type        = string
  default     = "1.33"

  validation {
    condition     = try(can(regex("^1\\.[0-9]+$", var.kubernetes_version)) && tonumber(split(".", var.kubernetes_version)[1]) >= 31, false)
    error_message = "kubernetes_version must be a minor version such as \"1.33\", at least 1.31 (the chart's minimum)."
  }
}

variable "release_tag" {
  description = "The one release tag every Chorus image is pulled with (API, license proxy, every worker pool), e.g. `chorus-20260301`. Upgrade or roll back by changing it and applying."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.release_tag)) && var.release_tag != "latest"
    error_message = "release_tag must be an image tag (letters, digits, '_', '.', '-', at most 128 characters) and not \"latest\": one dated tag pins every image, e.g. chorus-20260301."
  }
}

variable "release_version" {
  description = "Version of your deployment configuration, recorded on every workload (chart value `release.version`). Informational; empty: the chart's appVersion."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[A-Za-z0-9_.+-]{0,63}$", var.release_version))
    error_message = "release_version must be at most 63 characters of letters, digits, '_', '.', '+' and '-'."
  }
}

variable "image_registry" {
  description = "Registry and path the Chorus images are pulled from, without a trailing slash: images are `<image_registry>/<image>:<release_tag>`."
  type        = string
  default     = "ghcr.io/chorus-tts"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]*(:[0-9]+)?(/[a-z0-9][a-z0-9._-]*)*$", var.image_registry))
    error_message = "image_registry must be a registry host with an optional path, e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com/chorus: no scheme, no tag, no trailing '/'."
  }
}

variable "image_pull_secret" {
  description = "Name of an existing `kubernetes.io/dockerconfigjson` Secret in the Chorus namespace used to pull the images. Empty: none (public registry, or node credentials such as ECR or Artifact Registry access)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)?$", var.image_pull_secret))
    error_message = "image_pull_secret must be empty or a Kubernetes object name (lowercase letters, digits, '-', '.')."
  }
}

variable "namespace" {
  description = "Kubernetes namespace of the Chorus release."
  type        = string
  default     = "chorus"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS label (lowercase letters, digits and '-', at most 63 characters)."
  }
}

variable "release_name" {
  description = "Helm release name of Chorus: objects are named after it (`<release>-api`, `<release>-api-server`, `<release>-monitor`, `<release>-ssl-cert`)."
  type        = string
  default     = "chorus"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,28}[a-z0-9])?$", var.release_name))
    error_message = "release_name must be a DNS label of at most 30 characters starting with a letter."
  }
}

variable "workers" {
  description = "Worker pools, passed to the chart unchanged (chart value `workers`): one Deployment per entry, and a KEDA ScaledObject when `autoscaling.enabled`. `gpuType` is the extended resource each pod requests (`nvidia.com/gpu`, one per pod) or empty for a CPU pool."
  type = list(object({
    name = string
    workerArgs = object({
      model     = string
      image     = optional(string, "chorus")
      gpuType   = optional(string, "")
      capacity  = number
      operation = optional(string, "tts")
      useCB     = optional(bool, true)
      useLora   = optional(bool, false)
    })
    autoscaling = optional(object({
      enabled     = optional(bool, false)
      threshold   = optional(string, "0.8")
      minReplicas = optional(number, 1)
      maxReplicas = optional(number, 4)
    }), {})
  }))

  validation {
    condition     = length(var.workers) > 0
    error_message = "workers must have at least one pool."
  }
  validation {
    condition     = length(distinct([for w in var.workers : w.name])) == length(var.workers)
    error_message = "workers: pool names must be unique."
  }
  validation {
    condition     = alltrue([for w in var.workers : can(regex("^[a-z]([-a-z0-9]{0,22}[a-z0-9])?$", w.name))])
    error_message = "workers: each name must be a DNS label of at most 24 characters starting with a letter (it names the pool's Deployment)."
  }
  validation {
    condition     = alltrue([for w in var.workers : can(regex("^[A-Za-z0-9._-]+$", w.workerArgs.model))])
    error_message = "workers: each workerArgs.model must name a voice model (letters, digits, '.', '_', '-'), e.g. en_US-joe-medium."
  }
  validation {
    condition     = alltrue([for w in var.workers : can(regex("^[a-z0-9][a-z0-9._/-]*$", w.workerArgs.image))])
    error_message = "workers: each workerArgs.image must be an image name under image_registry without a tag (the tag is release_tag), e.g. chorus or chorus-cuda."
  }
  validation {
    condition     = alltrue([for w in var.workers : contains(["", "nvidia.com/gpu"], w.workerArgs.gpuType)])
    error_message = "workers: workerArgs.gpuType is the extended resource each pod requests: \"nvidia.com/gpu\" for a GPU pool, or empty for a CPU pool. The GPU model (e.g. nvidia-l4, g5 instances) is chosen by the node groups / node pools."
  }
  validation {
    condition     = alltrue([for w in var.workers : !(endswith(w.workerArgs.image, "-cuda") && w.workerArgs.gpuType == "")])
    error_message = "workers: a GPU pool (workerArgs.image chorus-cuda) needs workerArgs.gpuType = \"nvidia.com/gpu\"; without it its pods request no GPU and land on CPU nodes, where the CUDA worker cannot start."
  }
  validation {
    condition = alltrue([for w in var.workers : w.workerArgs.gpuType == "" || anytrue(concat(
      [for g in values(var.node_groups) : var.platform == "aws" && strcontains(g.ami_type, "NVIDIA")],
      [for p in values(var.node_pools) : var.platform == "gcp" && p.accelerator_count > 0],
    ))])
    error_message = "workers: a pool with gpuType \"nvidia.com/gpu\" needs a GPU node group (AWS: ami_type AL2023_x86_64_NVIDIA) or node pool (GCP: accelerator_type and accelerator_count) to run on; its pods would stay Pending."
  }
  validation {
    condition     = alltrue([for w in var.workers : w.workerArgs.capacity >= 1 && floor(w.workerArgs.capacity) == w.workerArgs.capacity])
    error_message = "workers: each workerArgs.capacity (concurrent streams per worker) must be a whole number, at least 1."
  }
  validation {
    condition     = alltrue([for w in var.workers : lower(w.workerArgs.operation) == "tts"])
    error_message = "workers: workerArgs.operation must be TTS (the only operation Chorus workers have)."
  }
  validation {
    condition     = alltrue([for w in var.workers : !w.workerArgs.useLora])
    error_message = "workers: workerArgs.useLora must be false: Chorus workers do not support LoRA voices."
  }
  validation {
    condition     = alltrue([for w in var.workers : try(tonumber(w.autoscaling.threshold) > 0 && tonumber(w.autoscaling.threshold) <= 1, false)])
    error_message = "workers: each autoscaling.threshold (target pool utilisation) must be a number in (0, 1], e.g. \"0.6\"."
  }
  validation {
    condition = alltrue([for w in var.workers : (w.autoscaling.minReplicas >= 0 && floor(w.autoscaling.minReplicas) == w.autoscaling.minReplicas &&
    w.autoscaling.maxReplicas >= max(1, w.autoscaling.minReplicas) && floor(w.autoscaling.maxReplicas) == w.autoscaling.maxReplicas)])
    error_message = "workers: autoscaling needs whole numbers with 0 <= minReplicas <= maxReplicas and maxReplicas >= 1."
  }
  validation {
    condition     = alltrue([for w in var.workers : !w.autoscaling.enabled || var.enable_pod_autoscaler])
    error_message = "workers: a pool with autoscaling.enabled needs enable_pod_autoscaler = true (KEDA); set it, or autoscaling.enabled = false for a fixed minReplicas pods."
  }
}

variable "control_plane_allowed_cidrs" {
  description = "CIDR blocks allowed to reach the Kubernetes API endpoint (EKS public endpoint access, GKE master authorized networks): the machine running `terraform apply` and `kubectl` must be in one."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.control_plane_allowed_cidrs) > 0 && alltrue([for c in var.control_plane_allowed_cidrs : can(cidrhost(c, 0)) && strcontains(c, "/")])
    error_message = "control_plane_allowed_cidrs must be one or more IPv4 CIDR blocks, e.g. [\"203.0.113.0/24\"]."
  }
}

variable "enable_hot_reload" {
  description = "Create the artifact bucket (S3 or GCS) and the workload identity (IRSA or GKE Workload Identity) that lets the API and workers read and write it: voices and dictionaries shared by every API server, voice models loaded by the workers without a restart."
  type        = bool
  default     = true
}

variable "artifact_bucket" {
  description = "Name of the artifact bucket made when `enable_hot_reload`. Empty: `<name>-chorus-artifacts-<region>` on AWS, `<project_id>-<name>-chorus` on GCP. Bucket names are global: set one if that name is taken."
  type        = string
  default     = ""

  validation {
    condition     = var.artifact_bucket == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.artifact_bucket))
    error_message = "artifact_bucket must be empty or a bucket name: 3 to 63 lowercase letters, digits, '.' and '-'."
  }
}

variable "enable_cluster_autoscaler" {
  description = "Let the cluster add and remove nodes between each group's / pool's min and max: the Cluster Autoscaler (with IRSA) on EKS, the node pools' own autoscaling on GKE. False: each group keeps its desired_size / initial_node_count."
  type        = bool
  default     = true
}

variable "enable_pod_autoscaler" {
  description = "Install KEDA, which scales the worker pools that have `autoscaling.enabled` on their utilisation. Needs `enable_metrics`."
  type        = bool
  default     = true

  validation {
    condition     = !var.enable_pod_autoscaler || var.enable_metrics
    error_message = "enable_pod_autoscaler needs enable_metrics = true: KEDA scales the worker pools on metrics it reads from Prometheus. Set enable_metrics = true, or enable_pod_autoscaler = false."
  }
}

variable "enable_metrics" {
  description = "Install kube-prometheus-stack (release `prometheus` in namespace `monitoring`) and let the chart's PodMonitor scrape the API, workers and license proxy."
  type        = bool
  default     = true
}

variable "enable_ingress" {
  description = "Expose the API on `ingress_route` over HTTPS: an ALB (AWS Load Balancer Controller) with `certificate_arn` on EKS, a GCE load balancer with a Google-managed certificate on a static IP on GKE."
  type        = bool
  default     = true
}

variable "ingress_route" {
  description = "Hostname clients use, e.g. `tts.example.com`. Required with `enable_ingress`; point its DNS at the `ingress_address` output."
  type        = string
  default     = ""

  validation {
    condition     = var.ingress_route != "" || !var.enable_ingress
    error_message = "ingress_route is empty but enable_ingress = true: set the hostname clients will use (e.g. tts.example.com), or enable_ingress = false."
  }
  validation {
    condition     = var.ingress_route == "" || can(regex("^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.ingress_route))
    error_message = "ingress_route must be a DNS hostname such as tts.example.com (no scheme, no path, no wildcard)."
  }
}

variable "license_mode" {
  description = "License proxy mode: `connected` (serves without a license; the default) or `air-gapped` (a valid signed license is needed after the grace period; seed it with `license_seed` and trust its signer with `license_trusted_keys`)."
  type        = string
  default     = "connected"

  validation {
    condition     = contains(["connected", "air-gapped"], var.license_mode)
    error_message = "license_mode must be \"connected\" or \"air-gapped\"."
  }
}

variable "license_seed" {
  description = "License JSON stored by the license proxy on first boot (`-var \"license_seed=$(cat license.json)\"`); an upgrade never overwrites a stored license. Empty: none."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.license_seed == "" || try(length(keys(jsondecode(var.license_seed))) > 0, false)
    error_message = "license_seed must be empty or a license: a JSON object (the file `chorus license issue` writes)."
  }
}

variable "license_trusted_keys" {
  description = "Base64 Ed25519 public keys trusted to sign licenses (`chorus license keygen` prints one). Required in `air-gapped` mode."
  type        = list(string)
  default     = []
  sensitive   = true

  validation {
    condition     = alltrue([for k in var.license_trusted_keys : can(regex("^[A-Za-z0-9+/]{43}=$", k))])
    error_message = "license_trusted_keys: each key must be a base64 Ed25519 public key (44 characters ending in '=')."
  }
  validation {
    condition     = var.license_mode != "air-gapped" || length(var.license_trusted_keys) > 0
    error_message = "license_mode = \"air-gapped\" needs license_trusted_keys: without a trusted signer no license can be accepted and serving stops after the grace period."
  }
}

# --- AWS (EKS) -------------------------------------------------------------------------------------------------------

variable "eks_admin_users" {
  description = "IAM user or role ARNs given cluster-admin on EKS (access entries with AmazonEKSClusterAdminPolicy), besides the identity that runs `terraform apply`."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.eks_admin_users : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(user|role)/[A-Za-z0-9+=,.@_/-]+$", a))])
    error_message = "eks_admin_users must be IAM ARNs such as arn:aws:iam::123456789012:user/alice or arn:aws:iam::123456789012:role/admins."
  }
}

variable "vpc_cidr" {
  description = "AWS: CIDR of the VPC; three private /20-sized subnets (nodes, behind one NAT gateway) and three public ones (load balancers) are cut from it."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && try(tonumber(split("/", var.vpc_cidr)[1]) >= 8 && tonumber(split("/", var.vpc_cidr)[1]) <= 20, false)
    error_message = "vpc_cidr must be an IPv4 CIDR block from /8 to /20, e.g. 10.0.0.0/16."
  }
}

variable "node_groups" {
  description = "AWS: EKS managed node groups by name. Keep a `default` group (AL2023_x86_64_STANDARD, no taints) for the API, NATS, the license proxy and the add-ons, and a `gpu` group (AL2023_x86_64_NVIDIA on g5/g6 instances) for GPU pools; GPU groups are labelled `nvidia.com/gpu.present=true`."
  type = map(object({
    ami_type       = string
    instance_types = list(string)
    min_size       = number
    max_size       = number
    desired_size   = number
    disk_size      = optional(number, 100)
    labels         = optional(map(string), {})
    taints = optional(map(object({
      key    = string
      value  = optional(string)
      effect = string
    })), {})
  }))
  default = {}

  validation {
    condition     = var.platform != "aws" || length(var.node_groups) > 0
    error_message = "node_groups must have at least one group on AWS."
  }
  validation {
    condition = alltrue([for g in values(var.node_groups) : (g.min_size >= 0 && g.max_size >= 1 &&
    g.min_size <= g.desired_size && g.desired_size <= g.max_size)])
    error_message = "node_groups: each group needs 0 <= min_size <= desired_size <= max_size and max_size >= 1; wrong in: ${join(", ", [for k, g in var.node_groups : k if !(g.min_size >= 0 && g.max_size >= 1 && g.min_size <= g.desired_size && g.desired_size <= g.max_size)])}."
  }
  validation {
    condition     = alltrue([for g in values(var.node_groups) : contains(["AL2023_x86_64_STANDARD", "AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64", "BOTTLEROCKET_x86_64_NVIDIA"], g.ami_type)])
    error_message = "node_groups: ami_type must be AL2023_x86_64_STANDARD, AL2023_x86_64_NVIDIA (GPU: the NVIDIA driver and container toolkit come with the AMI), BOTTLEROCKET_x86_64 or BOTTLEROCKET_x86_64_NVIDIA; the Chorus images are x86_64."
  }
  validation {
    condition = alltrue([for g in values(var.node_groups) : length(g.instance_types) > 0 && alltrue([
      for t in g.instance_types : can(regex("^(g4dn|g5|g6|g6e|gr6|p4d|p4de|p5|p5e|p5en)\\.", t)) == strcontains(g.ami_type, "NVIDIA")
    ])])
    error_message = "node_groups: each group needs instance_types, GPU instances (g4dn, g5, g6, g6e, gr6, p4d, p5 families) exactly in the groups with an NVIDIA ami_type (the standard AMI has no GPU driver; the NVIDIA AMI on a CPU instance wastes the group)."
  }
  validation {
    condition     = alltrue([for g in values(var.node_groups) : g.disk_size >= 20])
    error_message = "node_groups: disk_size (GiB) must be at least 20: the images and the models downloaded from the bucket live there."
  }
  validation {
    condition     = alltrue(flatten([for g in values(var.node_groups) : [for t in values(g.taints) : contains(["NO_SCHEDULE", "NO_EXECUTE", "PREFER_NO_SCHEDULE"], t.effect)]]))
    error_message = "node_groups: a taint's effect must be NO_SCHEDULE, NO_EXECUTE or PREFER_NO_SCHEDULE (the EKS API's spelling)."
  }
  validation {
    condition = var.platform != "aws" || anytrue([for g in values(var.node_groups) : (!strcontains(g.ami_type, "NVIDIA") &&
    length([for t in values(g.taints) : t if t.effect != "PREFER_NO_SCHEDULE"]) == 0)])
    error_message = "node_groups needs a group without GPUs and without NoSchedule/NoExecute taints (e.g. `default`) for the API, NATS, the license proxy and the cluster add-ons."
  }
}

variable "certificate_arn" {
  description = "AWS: ACM certificate ARN for the ALB's HTTPS listener, in `region`, covering `ingress_route`. Empty: the AWS Load Balancer Controller discovers a certificate matching the hostname."
  type        = string
  default     = ""

  validation {
    condition = var.certificate_arn == "" || (var.platform == "aws" && try(
      can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$", var.certificate_arn)) &&
    split(":", var.certificate_arn)[3] == var.region, false))
    error_message = "certificate_arn must be empty or an ACM certificate ARN in the cluster's region (arn:aws:acm:<region>:<account>:certificate/<id>); on GCP leave it empty (GKE uses Google-managed certificates)."
  }
}

# --- GCP (GKE) -------------------------------------------------------------------------------------------------------

variable "project_id" {
  description = "GCP: project the cluster, network, bucket and static IP are created in."
  type        = string
  default     = ""

  validation {
    condition     = var.platform != "gcp" || can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project id (6 to 30 lowercase letters, digits and '-', starting with a letter)."
  }
}

variable "zone" {
  description = "GCP: zone of the (zonal) cluster and its node pools, in `region`, e.g. `us-central1-a`; pick one that has the accelerator you ask for."
  type        = string
  default     = ""

  validation {
    condition     = var.platform != "gcp" || (can(regex("^[a-z]+-[a-z]+[0-9]+-[a-z]$", var.zone)) && startswith(var.zone, "${var.region}-"))
    error_message = "zone must be a zone of region, e.g. us-central1-a for region us-central1."
  }
}

variable "gke_admin_users" {
  description = "GCP: members given Kubernetes Engine Admin (`roles/container.admin`) on the project, as e-mail addresses (users) or `user:`, `group:`, `serviceAccount:` members."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for u in var.gke_admin_users : can(regex("^((user|group|serviceAccount):)?[^@:\\s]+@[^@:\\s]+\\.[a-z]{2,}$", u))])
    error_message = "gke_admin_users must be e-mail addresses or IAM members such as user:alice@example.com, group:admins@example.com."
  }
}

variable "node_pools" {
  description = "GCP: GKE node pools by name. Keep a `default` pool without accelerators for the API, NATS, the license proxy and the add-ons, and a `gpu` pool (e.g. g2-standard-8 with accelerator_type nvidia-l4) for GPU pools: GKE installs the NVIDIA driver (managed) and the device plugin."
  type = map(object({
    machine_type       = string
    accelerator_type   = optional(string, "")
    accelerator_count  = optional(number, 0)
    min_count          = number
    max_count          = number
    initial_node_count = number
    disk_size_gb       = optional(number, 100)
    spot               = optional(bool, false)
  }))
  default = {}

  validation {
    condition     = var.platform != "gcp" || length(var.node_pools) > 0
    error_message = "node_pools must have at least one pool on GCP."
  }
  validation {
    condition = alltrue([for p in values(var.node_pools) : (p.min_count >= 0 && p.max_count >= 1 &&
    p.min_count <= p.initial_node_count && p.initial_node_count <= p.max_count)])
    error_message = "node_pools: each pool needs 0 <= min_count <= initial_node_count <= max_count and max_count >= 1; wrong in: ${join(", ", [for k, p in var.node_pools : k if !(p.min_count >= 0 && p.max_count >= 1 && p.min_count <= p.initial_node_count && p.initial_node_count <= p.max_count)])}."
  }
  validation {
    condition     = alltrue([for p in values(var.node_pools) : (p.accelerator_type == "") == (p.accelerator_count == 0) && p.accelerator_count >= 0])
    error_message = "node_pools: accelerator_type and accelerator_count go together (both set for a GPU pool, both left out for a CPU pool)."
  }
  validation {
    condition = alltrue([for p in values(var.node_pools) : p.accelerator_type == "" || try(startswith(p.machine_type, {
      "nvidia-l4"             = "g2-"
      "nvidia-tesla-t4"       = "n1-"
      "nvidia-tesla-v100"     = "n1-"
      "nvidia-tesla-a100"     = "a2-highgpu-"
      "nvidia-a100-80gb"      = "a2-ultragpu-"
      "nvidia-h100-80gb"      = "a3-"
      "nvidia-h100-mega-80gb" = "a3-mega"
      "nvidia-h200-141gb"     = "a3-ultra"
      "nvidia-b200"           = "a4-"
      "nvidia-rtx-pro-6000"   = "g4-"
    }[p.accelerator_type]), false)])
    error_message = "node_pools: accelerator_type must be one GKE offers with its machine family: nvidia-l4 (g2-*), nvidia-tesla-t4 or nvidia-tesla-v100 (n1-*), nvidia-tesla-a100 (a2-highgpu-*), nvidia-a100-80gb (a2-ultragpu-*), nvidia-h100-80gb (a3-*), nvidia-h100-mega-80gb (a3-mega*), nvidia-h200-141gb (a3-ultra*), nvidia-b200 (a4-*), nvidia-rtx-pro-6000 (g4-*)."
  }
  validation {
    condition     = alltrue([for p in values(var.node_pools) : p.disk_size_gb >= 20])
    error_message = "node_pools: disk_size_gb must be at least 20: the images and the models downloaded from the bucket live there."
  }
  validation {
    condition     = var.platform != "gcp" || anytrue([for p in values(var.node_pools) : p.accelerator_count == 0])
    error_message = "node_pools needs a pool without accelerators (e.g. `default`) for the API, NATS, the license proxy and the add-ons: GKE taints GPU nodes."
  }
}

variable "ingress_static_ip_name" {
  description = "GCP: name of the global static IP the load balancer uses. Empty: `<name>-ingress-ip`. Created unless `ingress_use_existing_static_ip`."
  type        = string
  default     = ""

  validation {
    condition     = var.ingress_static_ip_name == "" || (var.platform == "gcp" && can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.ingress_static_ip_name)))
    error_message = "ingress_static_ip_name must be empty or, on GCP only, a resource name (lowercase letters, digits and '-', starting with a letter)."
  }
}

variable "ingress_use_existing_static_ip" {
  description = "GCP: use the global static IP named `ingress_static_ip_name` that already exists (reserved with `gcloud compute addresses create NAME --global`) instead of creating it."
  type        = bool
  default     = false

  validation {
    condition     = !var.ingress_use_existing_static_ip || var.ingress_static_ip_name != ""
    error_message = "ingress_use_existing_static_ip = true needs ingress_static_ip_name: the name of the existing global address."
  }
}
