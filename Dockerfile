# The pipeline's own image (used by docker-compose.yml for its services).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY iotpipe ./iotpipe
COPY ingest ./ingest
COPY flows ./flows
COPY sinks ./sinks
COPY simulators ./simulators
COPY bench ./bench
COPY deploy ./deploy
RUN pip install --no-cache-dir .
ENTRYPOINT []
