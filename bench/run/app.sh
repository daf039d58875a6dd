# The app behind the proxies in bench/run's scripts, sourced by them: `lameduck demo-app`
# (axum, GET / -> "ok") by default, or with APP=nginx nginx (`return 200 "ok\n"`),
# to see how much of a proxy's cost comes from one particular app's responses (nginx sends
# `Connection: keep-alive` and `Server`, which the demo app does not). NGINX_WORKERS sets
# nginx's worker processes (default 2).
#
#   check_app                 exits with a message if APP names no known app or nginx is missing
#   start_app BIN PORT DIR    starts the app in the background; its PID is in $!
#
# A caller may set the array app_launcher (e.g. `taskset -c 1`) to start the app through it.

app_kind=${APP:-demo}
nginx=$(command -v nginx || echo /usr/sbin/nginx)
nginx_workers=${NGINX_WORKERS:-2}
app_launcher=()

check_app() {
  case $app_kind in
    demo) ;;
    nginx)
      [[ $nginx_workers =~ ^[1-9][0-9]?$ ]] ||
        { echo "NGINX_WORKERS=$nginx_workers: expected a number of workers from 1 to 99" >&2; exit 2; }
      [[ -x $nginx ]] || { echo "nginx is missing: apt-get install -y nginx" >&2; exit 2; }
      ;;
    *) echo "APP=$app_kind: expected demo or nginx" >&2; exit 2 ;;
  esac
}

start_app() {
  local bin=$1 port=$2 dir=$3
  if [[ $app_kind == nginx ]]; then
    mkdir -p "$dir/nginx"
    cat >"$dir/nginx/nginx.conf" <<CFG
worker_processes $nginx_workers;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port;
    location / { return 200 "ok\n"; }
  }
}
CFG
    # In the foreground (of this background job), so $! is the master's PID and killing it
    # stops nginx.
    "${app_launcher[@]}" "$nginx" -c "$dir/nginx/nginx.conf" -p "$dir/nginx" -g 'daemon off;' 2>"$dir/app.err" &
  else
    "${app_launcher[@]}" "$bin" demo-app --listen "127.0.0.1:$port" 2>"$dir/app.err" &
  fi
}
