#!/usr/bin/env bash
# One-shot setup that runs before every other Airflow service: refuses placeholder secrets,
# migrates the metadata database and creates the admin user. docker-compose.yaml runs it as
# root (service airflow-init) so that it can hand the logs volume to AIRFLOW_UID. No project
# folder is shared: each DAG run snapshots the project to S3 (pmatch.run_tasks).
set -euo pipefail

logs_dir=/opt/airflow/logs
owner="${AIRFLOW_UID:-50000}:0"

# Every placeholder in .env.example contains "change-me". Starting with one would run the
# deployment on secrets that anyone can read in the repository, so stop and name the .env key.
declare -A env_key_of=(
    [AIRFLOW__CORE__FERNET_KEY]=AIRFLOW_FERNET_KEY
    [AIRFLOW__API_AUTH__JWT_SECRET]=AIRFLOW_JWT_SECRET
    [AIRFLOW__API__SECRET_KEY]=AIRFLOW_API_SECRET_KEY
    [AIRFLOW__DATABASE__SQL_ALCHEMY_CONN]=POSTGRES_PASSWORD
    [AWS_SECRET_ACCESS_KEY]=PMATCH_S3_SECRET_KEY
    [_AIRFLOW_WWW_USER_PASSWORD]=AIRFLOW_ADMIN_PASSWORD
)
placeholders=()
for variable in "${!env_key_of[@]}"; do
    if [[ "${!variable:-}" == *change-me* ]]; then
        placeholders+=("${env_key_of[${variable}]}")
    fi
done
if ((${#placeholders[@]} > 0)); then
    echo "ERROR: docker/.env still has the placeholder from .env.example for: ${placeholders[*]}" >&2
    echo "Generate real values as docker/README.md shows, put them in docker/.env and start again." >&2
    exit 1
fi

mkdir -p "${logs_dir}"
chown -R "${owner}" "${logs_dir}"

# The image's entrypoint waits for the database, runs `airflow db migrate` (_AIRFLOW_DB_MIGRATE)
# and creates the admin user (_AIRFLOW_WWW_USER_CREATE) before the command it is given. It
# ignores a failed migration, so that command checks that every migration was applied.
/entrypoint airflow db check-migrations --migration-wait-timeout 0

# Anything the steps above wrote into the logs volume as root goes back to the Airflow user.
chown -R "${owner}" "${logs_dir}"
echo "airflow-init finished: database migrated (see above for the admin user)"
