# One image for every Pulse service (exporters, bridge, demo); docker-compose.yml
# picks the module with `command`.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PULSE_DATA_DIR=/data \
    PULSE_CONFIG=/etc/pulse/pulse.yml
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pulse ./pulse
COPY exporters ./exporters
COPY bridge ./bridge
COPY demo ./demo
COPY grafana ./grafana
COPY rules ./rules
COPY alertmanager ./alertmanager
COPY docs ./docs
RUN pip install --no-cache-dir -e . && useradd --system --uid 10001 pulse \
    && mkdir -p /data && chown pulse /data
# The bridge renders every page from alertmanager/templates with amtool (one template
# source); the Alertmanager image the stack runs ships it.
COPY --from=prom/alertmanager:v0.27.0 /bin/amtool /usr/local/bin/amtool
COPY deploy/compose/pulse.yml /etc/pulse/pulse.yml
USER pulse
VOLUME ["/data"]
CMD ["python", "-m", "bridge"]
