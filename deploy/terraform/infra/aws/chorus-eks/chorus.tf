# Chorus: its artifact bucket, namespace, ServiceAccount, API key Secret, and the chart from this repository.

# --- the artifact bucket (voices, dictionaries, voice models), private and encrypted --------------------------------

resource "aws_s3_bucket" "artifacts" {
  count  = var.enable_hot_reload ? 1 : 0
  bucket = module.chorus_values.artifact_bucket

  #checkov:skip=CKV_AWS_18:Access logging needs a second bucket for the logs; CloudTrail data events cover audits where required.
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles the storage for data the operator can re-upload; versioning protects against deletes.
  #checkov:skip=CKV2_AWS_62:Nothing consumes event notifications: workers poll the bucket every reload interval.
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  count  = var.enable_hot_reload ? 1 : 0
  bucket = aws_s3_bucket.artifacts[0].id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  count  = var.enable_hot_reload ? 1 : 0
  bucket = aws_s3_bucket.artifacts[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  count  = var.enable_hot_reload ? 1 : 0
  bucket = aws_s3_bucket.artifacts[0].id

  rule {
    apply_server_side_encryption_by_default {
      # The account's AWS managed key for S3 (aws/s3): usable through S3 by the Chorus role, no key policy to keep.
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "artifacts" {
  count  = var.enable_hot_reload ? 1 : 0
  bucket = aws_s3_bucket.artifacts[0].id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  count  = var.enable_hot_reload ? 1 : 0
  bucket = aws_s3_bucket.artifacts[0].id

  rule {
    id     = "expire-old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.artifacts]
}

# --- Kubernetes objects the chart references by name ----------------------------------------------------------------

# Encrypted gp3 volumes (EBS CSI driver) for the license proxy's claim and Prometheus.
resource "kubernetes_storage_class_v1" "gp3" {
  metadata {
    name = module.chorus_values.storage_class
  }
  storage_provisioner    = "ebs.csi.aws.com"
  volume_binding_mode    = "WaitForFirstConsumer"
  allow_volume_expansion = true
  reclaim_policy         = "Delete"
  parameters = {
    type      = "gp3"
    encrypted = "true"
  }

  depends_on = [module.eks]
}

resource "kubernetes_namespace_v1" "chorus" {
  metadata {
    name = var.namespace
  }

  depends_on = [module.eks]
}

# The familiar API key Secret: CARTESIA_API_KEY is the clients' key, CONTAINER_KEY the license proxy's token.
resource "kubernetes_secret_v1" "api_keys" {
  metadata {
    name      = module.chorus_values.api_key_secret
    namespace = kubernetes_namespace_v1.chorus.metadata[0].name
  }
  data = merge(
    { CARTESIA_API_KEY = var.chorus_api_key },
    var.chorus_container_key != "" ? { CONTAINER_KEY = var.chorus_container_key } : {},
  )
}

# --- Chorus ------------------------------------------------------------------------------------------------------

resource "helm_release" "chorus" {
  name      = var.release_name
  chart     = "${path.module}/../../../../helm/chorus"
  namespace = kubernetes_namespace_v1.chorus.metadata[0].name

  values = [
    module.chorus_values.values_yaml,
    module.chorus_values.license_values_yaml,
  ]

  # Wait for every Deployment to be Ready (workers load their model first); a failed upgrade rolls back.
  wait            = true
  atomic          = true
  cleanup_on_fail = true
  timeout         = 1200
  max_history     = 10

  depends_on = [
    kubernetes_secret_v1.api_keys,
    kubernetes_storage_class_v1.gp3,
    helm_release.nvidia_device_plugin,
    helm_release.aws_load_balancer_controller,
    helm_release.kube_prometheus_stack,
    helm_release.keda,
    aws_s3_bucket_public_access_block.artifacts,
  ]
}
