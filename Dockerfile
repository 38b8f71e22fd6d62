# moe-router: build on the CUDA 13 devel image, run on the runtime image.
#   docker build --build-arg MOE_ROUTER_COMMIT=$(git rev-parse --short=12 HEAD) -t moe-router .
# (the image has no git: the commit that --version and moe_router_build_info report comes
# from the build argument, "unknown" without it)
#   docker run --gpus all -p 50051:50051 -p 9090:9090 moe-router
FROM nvidia/cuda:13.0.0-devel-ubuntu24.04 AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake ninja-build g++ pkg-config libgrpc++-dev libprotobuf-dev protobuf-compiler \
      protobuf-compiler-grpc libabsl-dev libcivetweb-dev libgtest-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG MOE_ROUTER_COMMIT=unknown
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_ROUTER_BUILD_TESTS=OFF \
      -DMOE_ROUTER_CUDA=ON -DMOE_ROUTER_COMMIT=${MOE_ROUTER_COMMIT} && cmake --build /build --target moe-router-server moe-router moe-router-extract

FROM nvidia/cuda:13.0.0-runtime-ubuntu24.04
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51t64 libprotobuf32t64 libcivetweb1 && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 moe
COPY --from=build /build/server/moe-router-server /build/client/moe-router /build/server/moe-router-extract /usr/local/bin/
USER moe
EXPOSE 50051 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD ["moe-router", "--address", "127.0.0.1:50051", "health"]
ENTRYPOINT ["moe-router-server"]
CMD ["--model", "demo-deepseek-v3", "--address", "0.0.0.0:50051", "--metrics_address", "0.0.0.0:9090"]
