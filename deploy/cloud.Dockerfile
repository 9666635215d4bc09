# The cloud side (API + workers) as one image: `giftwheel api` / `giftwheel worker`.
# Build from the repository root: docker build -f deploy/cloud.Dockerfile -t giftwheel-cloud .
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY giftwheel giftwheel
COPY cloud cloud
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[cloud]'

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin giftwheel
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'giftwheel[cloud]' && rm -rf /wheels
USER giftwheel
ENTRYPOINT ["giftwheel"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
