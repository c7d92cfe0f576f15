# The variables of the EKS root configuration, in the familiar shape. Types, defaults and descriptions
# are those of modules/chorus-values, which validates every value (a bad value is refused at plan with its message);
# deploy/terraform/tests checks that the two stay the same. The API keys are validated here: they never reach the
# module.

variable "name" {
  description = "Name of the cluster; also the prefix of every cloud resource made for it (network, node groups, bucket, IAM roles, static IP)."
  type        = string
}

variable "region" {
  description = "Cloud region, e.g. `us-west-2` (AWS) or `us-central1` (GCP)."
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the control plane and the nodes, e.g. `1.33`. The chart needs 1.31 or later."
  type        = string
  default     = "1.33"
}

variable "vpc_cidr" {
  description = "AWS: CIDR of the VPC; three private /20-sized subnets (nodes, behind one NAT gateway) and three public ones (load balancers) are cut from it."
  type        = string
  default     = "10.0.0.0/16"
}

variable "eks_admin_users" {
  description = "IAM user or role ARNs given cluster-admin on EKS (access entries with AmazonEKSClusterAdminPolicy), besides the identity that runs `terraform apply`."
  type        = list(string)
  default     = []
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
}

variable "control_plane_allowed_cidrs" {
  description = "CIDR blocks allowed to reach the Kubernetes API endpoint (EKS public endpoint access, GKE master authorized networks): the machine running `terraform apply` and `kubectl` must be in one."
  type        = list(string)
  default     = ["0.0.0.0/0"]
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
}

variable "certificate_arn" {
  description = "AWS: ACM certificate ARN for the ALB's HTTPS listener, in `region`, covering `ingress_route`. Empty: the AWS Load Balancer Controller discovers a certificate matching the hostname."
  type        = string
  default     = ""
}

variable "image_registry" {
  description = "Registry and path the Chorus images are pulled from, without a trailing slash: images are `<image_registry>/<image>:<release_tag>`."
  type        = string
  default     = "ghcr.io/chorus-tts"
}

variable "image_pull_secret" {
  description = "Name of an existing `kubernetes.io/dockerconfigjson` Secret in the Chorus namespace used to pull the images. Empty: none (public registry, or node credentials such as ECR or Artifact Registry access)."
  type        = string
  default     = ""
}

variable "release_tag" {
  description = "The one release tag every Chorus image is pulled with (API, license proxy, every worker pool), e.g. `chorus-20260301`. Upgrade or roll back by changing it and applying."
  type        = string
}

variable "release_version" {
  description = "Version of your deployment configuration, recorded on every workload (chart value `release.version`). Informational; empty: the chart's appVersion."
  type        = string
  default     = ""
}

variable "namespace" {
  description = "Kubernetes namespace of the Chorus release."
  type        = string
  default     = "chorus"
}

variable "release_name" {
  description = "Helm release name of Chorus: objects are named after it (`<release>-api`, `<release>-api-server`, `<release>-monitor`, `<release>-ssl-cert`)."
  type        = string
  default     = "chorus"
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
}

variable "enable_metrics" {
  description = "Install kube-prometheus-stack (release `prometheus` in namespace `monitoring`) and let the chart's PodMonitor scrape the API, workers and license proxy."
  type        = bool
  default     = true
}

variable "license_mode" {
  description = "License proxy mode: `connected` (serves without a license; the default) or `air-gapped` (a valid signed license is needed after the grace period; seed it with `license_seed` and trust its signer with `license_trusted_keys`)."
  type        = string
  default     = "connected"
}

variable "license_seed" {
  description = "License JSON stored by the license proxy on first boot (`-var \"license_seed=$(cat license.json)\"`); an upgrade never overwrites a stored license. Empty: none."
  type        = string
  default     = ""
  sensitive   = true
}

variable "license_trusted_keys" {
  description = "Base64 Ed25519 public keys trusted to sign licenses (`chorus license keygen` prints one). Required in `air-gapped` mode."
  type        = list(string)
  default     = []
  sensitive   = true
}

variable "chorus_api_key" {
  description = "The clients' API key (`-var \"chorus_api_key=$KEY\"`), stored as CARTESIA_API_KEY in the Secret `api-key-secret` that the chart reads. Never put it in a tfvars file."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.chorus_api_key) >= 16 && !strcontains(var.chorus_api_key, ",")
    error_message = "chorus_api_key must be at least 16 characters without ',' (e.g. openssl rand -hex 24)."
  }
}

variable "chorus_container_key" {
  description = "Optional CONTAINER_KEY of the Secret `api-key-secret` (the license proxy's upstream token in connected mode). Empty: not set."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.chorus_container_key == "" || length(var.chorus_container_key) >= 16
    error_message = "chorus_container_key must be empty or at least 16 characters."
  }
}
