// pm2 process file for one Pi: the bridge (on the Pi that runs the orchestrator) and the
// worker for this node. Settings come from ORION_* environment variables, so the same file
// serves every Pi:
//
//   ORION_NODE_ID=pi-8g ORION_REDIS_ADDR=redis.orion.local:6379 pm2 start ecosystem.config.cjs
//   pm2 start ecosystem.config.cjs --only orion-inference-worker   # a worker-only Pi
//   pm2 start ecosystem.config.cjs --only orion-inference-gateway  # OpenAI/Ollama HTTP (port 11435)
//
// pm2 sends SIGINT on stop/restart: both programs then drain (the worker finishes the
// generations it holds, the bridge its batch) and exit 0. kill_timeout leaves a long
// generation time to finish before pm2 resorts to SIGKILL; anything still unfinished then is
// recovered by the bridge on another node.
const os = require('node:os');

const shared = {
  ORION_REDIS_ADDR: process.env.ORION_REDIS_ADDR || 'localhost:6379',
  ORION_STREAM_PREFIX: process.env.ORION_STREAM_PREFIX || 'orion:inference',
  ORION_LOG_LEVEL: process.env.ORION_LOG_LEVEL || 'info',
};
// Secrets are passed through only when set, never written here.
for (const key of ['ORION_REDIS_PASSWORD', 'ORION_REDIS_USERNAME', 'ORION_REDIS_TLS', 'ORION_REDIS_TLS_CA']) {
  if (process.env[key]) shared[key] = process.env[key];
}

module.exports = {
  apps: [
    {
      name: 'orion-inference-router',
      script: './dist/src/bin/router.js',
      exec_mode: 'fork',
      instances: 1,
      autorestart: true,
      restart_delay: 5000,
      kill_timeout: 30000,
      env: {
        ...shared,
        ORION_HTTP_PORT: process.env.ORION_ROUTER_HTTP_PORT || '8080',
        ...(process.env.ORION_ADMIN_USER ? { ORION_ADMIN_USER: process.env.ORION_ADMIN_USER } : {}),
        ...(process.env.ORION_ADMIN_PASSWORD ? { ORION_ADMIN_PASSWORD: process.env.ORION_ADMIN_PASSWORD } : {}),
      },
    },
    {
      name: 'orion-inference-worker',
      script: './dist/src/bin/worker.js',
      exec_mode: 'fork',
      instances: 1,
      autorestart: true,
      restart_delay: 5000,
      // A Pi generates a few tokens a second: give a running answer up to 10 minutes to finish.
      kill_timeout: 600000,
      // A small young generation: the worker allocates little per job, and the RAM is Ollama's
      // (about 5 MB less resident when idle; `npm run bench`, row P6).
      node_args: ['--max-semi-space-size=2'],
      env: {
        ...shared,
        ORION_NODE_ID: process.env.ORION_NODE_ID || os.hostname(),
        ORION_OLLAMA_HOST: process.env.ORION_OLLAMA_HOST || 'http://localhost:11434',
        ORION_HTTP_PORT: process.env.ORION_WORKER_HTTP_PORT || '8081',
      },
    },
    {
      // OpenAI- and Ollama-compatible HTTP in front of the bus; stops taking calls on SIGINT
      // and gives the ones in hand a few seconds (their requests are cancelled if cut).
      name: 'orion-inference-gateway',
      script: './dist/src/bin/gateway.js',
      exec_mode: 'fork',
      instances: 1,
      autorestart: true,
      restart_delay: 5000,
      kill_timeout: 10000,
      env: {
        ...shared,
        ORION_HTTP_PORT: process.env.ORION_GATEWAY_HTTP_PORT || '11435',
        ORION_HTTP_ADDR: process.env.ORION_GATEWAY_HTTP_ADDR || '0.0.0.0',
        ...(process.env.ORION_API_KEY ? { ORION_API_KEY: process.env.ORION_API_KEY } : {}),
        ...(process.env.ORION_REQUEST_TIMEOUT ? { ORION_REQUEST_TIMEOUT: process.env.ORION_REQUEST_TIMEOUT } : {}),
      },
    },
  ],
};
