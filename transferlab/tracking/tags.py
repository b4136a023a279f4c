"""The names of the tags and variables that tie MLflow runs to a pipeline execution, a stage and a process."""

PIPELINE_ID_ENV = "TRANSFERLAB_PIPELINE_ID"
PIPELINE_TAG = "transferlab.pipeline_id"
STAGE_TAG = "transferlab.stage"
PROCESS_TAG = "transferlab.process"  # host:pid:start time of the process that owns a RUNNING run
PARENT_TAG = "mlflow.parentRunId"
EXPERIMENT_KIND_TAG, TRAINING = "mlflow.experimentKind", "custom_model_development"
ROLE_TAG, PIPELINE_ROLE = "transferlab.role", "pipeline"
LOCK_TAG = "dvc.lock.sha256"
MODEL_URI_TAG = "transferlab.model_uri.{name}"
