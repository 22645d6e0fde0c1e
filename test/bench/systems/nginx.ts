/**
 * The do-it-yourself answer: Debian's nginx on the server host as a caching reverse proxy in
 * front of the origin, `proxy_cache` with `proxy_cache_lock` (concurrent misses wait for one
 * upstream fetch). nginx passes every request header on, repeated `Accept` values included.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { childPids, procStats, startProc, waitHttp } from '../proc.js'
import { skopeoPulls, type RunningSystem, type ScenarioContext } from './system.js'

export const NGINX_BIN = '/usr/sbin/nginx'

function conf (dir: string, listen: string, upstream: string): string {
  return `daemon off;
master_process on;
worker_processes auto;
user root;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/tmp;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=registry:16m max_size=64g inactive=1d use_temp_path=off;
  server {
    listen ${listen};
    location /v2/ {
      proxy_pass ${upstream};
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_buffering on;
      proxy_max_temp_file_size 0;
      proxy_cache registry;
      proxy_cache_key "$request_uri $http_accept";
      proxy_cache_methods GET HEAD;
      proxy_cache_valid 200 206 1h;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 1h;
      proxy_cache_lock_age 1h;
      proxy_read_timeout 1h;
    }
  }
}
`
}

export async function startNginx (ctx: ScenarioContext): Promise<RunningSystem> {
  const server = ctx.topo.server
  const port = await server.port('nginx', 8080)
  const dir = join(ctx.dir, 'nginx')
  await mkdir(join(dir, 'cache'), { recursive: true })
  const listen = `${server.addr}:${port}`
  await writeFile(join(dir, 'nginx.conf'), conf(dir, listen, ctx.origin.url))
  const proc = startProc(server, 'nginx', [NGINX_BIN, '-p', dir, '-c', join(dir, 'nginx.conf')], ctx.dir, ctx.cleanup)
  try {
    await waitHttp(proc, `http://${listen}/v2/`)
  } catch (err) {
    await proc.stop()
    throw err
  }
  return {
    ...skopeoPulls(ctx, () => listen),
    collect: async () => {
      const workers = await childPids(proc.pid)
      return { processes: [await procStats('nginx master', proc.pid), ...await Promise.all(workers.map(async (w, i) => await procStats(`nginx worker ${i + 1}`, w)))] }
    },
    stop: async () => { await proc.stop() }
  }
}
