#!/usr/bin/env node
// deploy_test.mjs - checks the deployment files: deploy/compose.yaml, the
// Kubernetes manifests in deploy/k8s/ (and deploy/kustomization.yaml), the
// systemd unit, and that the Dockerfile prepares its build stage with
// deploy/setup.sh rather than a second list of packages.
//
// YAML is parsed with the `yaml` package pinned in tests/contract (make
// test installs it). `systemd-analyze verify` checks the unit where it is
// installed; elsewhere that part skips, saying so. Prints cmocka-style
// totals for tests/run.sh.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync,
         writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const top = resolve(here, '../..');
const require = createRequire(join(top, 'tests/contract/package.json'));
const YAML = require('yaml');

let passed = 0;
const failed = [];
const skipped = [];

function test(name, fn) {
  console.log(`[ RUN      ] ${name}`);
  try {
    const r = fn();
    if (r === 'skip') {
      skipped.push(name);
      console.log(`[  SKIPPED ] ${name}`);
      return;
    }
    passed++;
    console.log(`[       OK ] ${name}`);
  } catch (e) {
    failed.push(name);
    console.log(`[  ERROR   ] --- ${e.message}`);
    console.log(`[  FAILED  ] ${name}`);
  }
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

function docs(rel) {
  const text = readFileSync(join(top, rel), 'utf8');
  // merge keys (<<) as compose uses them
  const all = YAML.parseAllDocuments(text, { merge: true });
  for (const d of all)
    if (d.errors.length)
      throw new Error(`${rel}: ${d.errors[0].message}`);
  return all.map((d) => d.toJS()).filter((d) => d);
}

// Every Kubernetes object in deploy/k8s/, by kind and name.
function k8s() {
  const dir = 'deploy/k8s';
  const objs = [];
  for (const f of readdirSync(join(top, dir)).sort()) {
    if (!/\.ya?ml$/.test(f))
      continue;
    for (const o of docs(join(dir, f))) {
      check(o.apiVersion && o.kind && o.metadata && o.metadata.name,
            `${dir}/${f}: an object without apiVersion, kind or name`);
      check(o.kind !== 'Kustomization',
            `${dir}/${f}: a Kustomization breaks kubectl apply -f ${dir}/`);
      o.file = `${dir}/${f}`;
      objs.push(o);
    }
  }
  return objs;
}

function one(objs, kind, pred = () => true) {
  const found = objs.filter((o) => o.kind === kind && pred(o));
  check(found.length === 1,
        `want one ${kind}, found ${found.length}`);
  return found[0];
}

function env(c, name) {
  const e = (c.env || []).find((x) => x.name === name);
  return e && e.value;
}

function probes(c, where) {
  check(c.readinessProbe && c.readinessProbe.httpGet &&
        c.readinessProbe.httpGet.path === '/v1/ready',
        `${where}: readiness probe is not GET /v1/ready`);
  check(c.livenessProbe && c.livenessProbe.httpGet &&
        c.livenessProbe.httpGet.path === '/v1/health',
        `${where}: liveness probe is not GET /v1/health`);
  const req = c.resources && c.resources.requests;
  check(req && req.cpu && req.memory,
        `${where}: no cpu and memory requests`);
}

test('k8s trainer: one-replica StatefulSet, volume, secret, config', () => {
  const objs = k8s();
  const st = one(objs, 'StatefulSet');
  check(st.spec.replicas === 1, 'trainer replicas is not 1');
  const pod = st.spec.template.spec;
  const c = pod.containers[0];
  probes(c, 'trainer');
  check(env(c, 'SEMD_TRAIN') === '1', 'trainer without SEMD_TRAIN=1');
  const dataDir = env(c, 'SEMD_DATA_DIR');
  check(dataDir, 'trainer without SEMD_DATA_DIR');
  const mount = c.volumeMounts.find((m) => m.mountPath === dataDir);
  check(mount, `nothing mounted at SEMD_DATA_DIR ${dataDir}`);
  const vol = pod.volumes.find((v) => v.name === mount.name);
  const claim = vol.persistentVolumeClaim.claimName;
  const pvc = one(objs, 'PersistentVolumeClaim',
                  (o) => o.metadata.name === claim);
  check(pvc.spec.accessModes.includes('ReadWriteMany'),
        'the shared claim is not ReadWriteMany');
  // the token: a Secret mounted where SEMD_TOKEN_FILE points
  const tokenFile = env(c, 'SEMD_TOKEN_FILE');
  check(tokenFile, 'trainer without SEMD_TOKEN_FILE');
  const tm = c.volumeMounts.find((m) => tokenFile.startsWith(m.mountPath +
                                                             '/'));
  check(tm, `nothing mounted for ${tokenFile}`);
  const tv = pod.volumes.find((v) => v.name === tm.name);
  check(tv.secret, 'the token volume is not a Secret');
  const secret = one(objs, 'Secret',
                     (o) => o.metadata.name === tv.secret.secretName);
  const key = tokenFile.slice(tm.mountPath.length + 1);
  check((secret.stringData || secret.data || {})[key] !== undefined,
        `Secret ${secret.metadata.name} has no key ${key}`);
  // semd refuses a token file others can read
  check((tv.secret.defaultMode & 0o007) === 0,
        'the token is mounted readable by others');
  check(pod.securityContext && pod.securityContext.fsGroup,
        'no fsGroup: the non-root user cannot read the token');
  const cm = c.envFrom.find((e) => e.configMapRef).configMapRef.name;
  one(objs, 'ConfigMap', (o) => o.metadata.name === cm);
  one(objs, 'Service', (o) => o.spec.selector['app.kubernetes.io/component']
                             === 'trainer');
});

test('k8s followers: Deployment following the volume, probes, HPA', () => {
  const objs = k8s();
  const dep = one(objs, 'Deployment');
  const pod = dep.spec.template.spec;
  const c = pod.containers[0];
  probes(c, 'follower');
  const dir = env(c, 'SEMD_FOLLOW');
  check(dir, 'followers without SEMD_FOLLOW');
  check(!env(c, 'SEMD_TRAIN'), 'followers must not train');
  const mount = c.volumeMounts.find((m) => m.mountPath === dir);
  check(mount, `nothing mounted at SEMD_FOLLOW ${dir}`);
  const vol = pod.volumes.find((v) => v.name === mount.name);
  const st = one(objs, 'StatefulSet');
  const tvol = st.spec.template.spec.volumes.find(
    (v) => v.persistentVolumeClaim);
  check(vol.persistentVolumeClaim.claimName ===
        tvol.persistentVolumeClaim.claimName,
        'followers do not mount the trainer\'s claim');
  check(c.envFrom.some((e) => e.configMapRef), 'followers without ConfigMap');
  const hpa = one(objs, 'HorizontalPodAutoscaler');
  check(hpa.spec.scaleTargetRef.kind === 'Deployment' &&
        hpa.spec.scaleTargetRef.name === dep.metadata.name,
        'the HPA does not scale the followers');
  check(hpa.spec.metrics.some((m) => m.resource && m.resource.name === 'cpu'),
        'the HPA does not scale on CPU');
  one(objs, 'Service', (o) => o.spec.selector['app.kubernetes.io/component']
                             === 'follower');
});

test('kustomization lists every manifest', () => {
  const [k] = docs('deploy/kustomization.yaml');
  check(k.kind === 'Kustomization', 'not a Kustomization');
  const files = readdirSync(join(top, 'deploy/k8s'))
    .filter((f) => /\.ya?ml$/.test(f)).map((f) => `k8s/${f}`).sort();
  check(JSON.stringify([...k.resources].sort()) === JSON.stringify(files),
        `resources ${k.resources} are not ${files}`);
});

test('compose: a trainer and two followers sharing a volume', () => {
  const [c] = docs('deploy/compose.yaml');
  const s = c.services;
  const names = Object.keys(s);
  const trainers = names.filter((n) => s[n].environment.SEMD_TRAIN === '1');
  const followers = names.filter((n) => s[n].environment.SEMD_FOLLOW);
  check(trainers.length === 1, `${trainers.length} trainers`);
  check(followers.length === 2, `${followers.length} followers`);
  const t = s[trainers[0]];
  const vol = (x) => x.volumes.find((v) => v.endsWith(':/data'));
  check(t.environment.SEMD_DATA_DIR === '/data', 'trainer data dir');
  check(t.environment.SEMD_TOKEN_FILE, 'trainer without a token file');
  check(t.secrets && t.secrets.length === 1, 'trainer without its secret');
  check(typeof t.secrets[0].mode === 'number' &&
        (t.secrets[0].mode & 0o077) === 0,
        'the token secret is readable by others than its owner');
  const ports = new Set();
  for (const n of [...trainers, ...followers]) {
    check(vol(s[n]) === vol(t), `${n} does not share the trainer's volume`);
    check(s[n].healthcheck && s[n].healthcheck.test.join(' ')
          .includes('/v1/ready'), `${n}: no health check on /v1/ready`);
    check(s[n].ports && s[n].ports.length === 1, `${n}: not one port`);
    ports.add(s[n].ports[0].split(':').slice(-2)[0]);
  }
  check(ports.size === 3, 'services share a host port');
  for (const n of followers)
    check(s[n].environment.SEMD_FOLLOW === '/data', `${n} follows elsewhere`);
  check(c.volumes && Object.keys(c.volumes).length >= 1, 'no named volume');
});

test('Dockerfile: the build stage runs deploy/setup.sh, not its own list', () => {
  const text = readFileSync(join(top, 'Dockerfile'), 'utf8')
    .replace(/\\\n/g, ' ');
  const stages = text.split(/^FROM /m).slice(1);
  check(stages.length >= 2, 'not a multi-stage build');
  const build = stages[0];
  const runs = build.split('\n').filter((l) => /^RUN /.test(l));
  check(runs.some((l) => /bash deploy\/setup\.sh/.test(l)),
        'the build stage does not run deploy/setup.sh');
  check(!runs.some((l) => /apt-get install|apt install/.test(l)),
        'the build stage installs packages itself: a second recipe');
  check(/COPY deploy\/setup\.sh/.test(build),
        'the build stage does not copy deploy/setup.sh');
  check(/make\b/.test(runs.join('\n')), 'the build stage does not run make');
  const final = stages[stages.length - 1];
  check(/^USER /m.test(final) && !/^USER (root|0)\b/m.test(final),
        'the runtime stage runs as root');
  check(/^EXPOSE 8080/m.test(final), 'no EXPOSE 8080');
  check(/^HEALTHCHECK .*\/v1\/ready/m.test(final), 'no HEALTHCHECK on ready');
  check(/^VOLUME \/data/m.test(final), 'no VOLUME /data');
});

test('systemd unit: sandboxed, state directory, verified', () => {
  const rel = 'deploy/systemd/semd.service';
  const text = readFileSync(join(top, rel), 'utf8');
  const keys = {};
  for (const l of text.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(l);
    if (m)
      (keys[m[1]] = keys[m[1]] || []).push(m[2]);
  }
  const want = { NoNewPrivileges: 'yes', ProtectSystem: 'strict',
                 ProtectHome: 'yes', PrivateTmp: 'yes' };
  for (const [k, v] of Object.entries(want))
    check(keys[k] && keys[k].includes(v), `${rel}: no ${k}=${v}`);
  check(keys.DynamicUser || keys.User, `${rel}: no DynamicUser or User`);
  check(keys.StateDirectory, `${rel}: no StateDirectory`);
  check(keys.EnvironmentFile, `${rel}: no EnvironmentFile`);
  check(keys.SystemCallFilter && keys.RestrictAddressFamilies,
        `${rel}: no system call or address family filter`);
  let sa = null;
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    sa = 'systemd-analyze';
  } catch {
    console.log('systemd-analyze is not installed: the unit is not verified');
    return 'skip';
  }
  // verify wants the binary to exist: point ExecStart at the built one
  const bin = resolve(process.env.SEMD_BIN || join(top, 'build/semd'));
  check(existsSync(bin), `no binary at ${bin}`);
  const dir = mkdtempSync(join(tmpdir(), 'semd-unit-'));
  try {
    const unit = join(dir, 'semd.service');
    writeFileSync(unit, text.replaceAll('/usr/local/bin/semd', bin));
    execFileSync(sa, ['verify', unit], { stdio: 'pipe' });
  } catch (e) {
    throw new Error(`systemd-analyze verify: ${e.stderr || e.message}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

console.log(`[==========] ${passed + failed.length + skipped.length} ` +
            'test(s) run.');
console.log(`[  PASSED  ] ${passed} test(s).`);
if (skipped.length) {
  console.log(`[  SKIPPED ] ${skipped.length} test(s), listed below:`);
  for (const f of skipped) console.log(`[  SKIPPED ] ${f}`);
}
if (failed.length) {
  console.log(`[  FAILED  ] ${failed.length} test(s), listed below:`);
  for (const f of failed) console.log(`[  FAILED  ] ${f}`);
  process.exit(1);
}
