#!/usr/bin/env python3
"""Writes a multi-document YAML stream of N Kubernetes objects (default 10,000) to stdout.

The mix is what a platform repository holds: per service a Deployment (with probes, preStop,
resources), a Service, a PodDisruptionBudget and an HPA; every tenth service has mistakes so the
checks have findings to report. Deterministic (no randomness), so runs are comparable.
"""
import sys

def service(i, bad):
    ns = f"team-{i % 50}"
    name = f"svc-{i}"
    replicas = 1 if bad else 3
    prestop = "" if bad else """        lifecycle:
          preStop:
            sleep: {seconds: 5}
"""
    yield f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app.kubernetes.io/name: {name}, app.kubernetes.io/part-of: shop}}
spec:
  replicas: {replicas}
  minReadySeconds: 5
  progressDeadlineSeconds: 300
  strategy:
    rollingUpdate: {{maxUnavailable: {1 if bad else 0}, maxSurge: 1}}
  selector:
    matchLabels: {{app.kubernetes.io/name: {name}}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: {name}, version: "1.{i}"}}
      annotations:
        lameduck.dev/drain-seconds: "10"
    spec:
      terminationGracePeriodSeconds: {20 if bad else 30}
      containers:
      - name: app
        image: registry.example.com/{ns}/{name}:1.{i}.0
        args: [--port=8080, --log-format=json]
        env:
        - {{name: SERVICE_NAME, value: {name}}}
        - {{name: GOMAXPROCS, value: "2"}}
        ports:
        - {{name: http, containerPort: 8080}}
        resources:
          requests: {{cpu: 100m, memory: 128Mi}}
          limits: {{memory: 256Mi}}
        readinessProbe:
          httpGet: {{path: /ready, port: http}}
          periodSeconds: 2
          failureThreshold: 2
        livenessProbe:
          httpGet: {{path: /live, port: http}}
          initialDelaySeconds: 10
          periodSeconds: 10
          failureThreshold: 6
{prestop}"""
    yield f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {ns}
spec:
  selector: {{app.kubernetes.io/name: {name}}}
  ports:
  - {{name: http, port: 80, targetPort: http}}
"""
    yield f"""apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {name}
  namespace: {ns}
spec:
  maxUnavailable: 1
  selector:
    matchLabels: {{app.kubernetes.io/name: {name}}}
"""
    yield f"""apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {name}
  namespace: {ns}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  minReplicas: {replicas}
  maxReplicas: 10
"""

def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    out = sys.stdout
    count, i = 0, 0
    while count < n:
        for doc in service(i, i % 10 == 9):
            if count == n:
                break
            out.write("---\n")
            out.write(doc)
            count += 1
        i += 1

main()
