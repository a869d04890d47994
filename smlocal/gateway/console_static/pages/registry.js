// The model registry: model package groups, a group's versions (metrics, approval) and approve/reject.
// Every name, description, metadata value and metric comes from the API or from S3 and is shown as text
// only (dom.js's h() makes text nodes; this module never touches innerHTML).
import { sagemaker, consoleBlob, listAll } from '../api.js';
import { flatten, fmtTime, h, replace, statusBadge, useStyle } from '../dom.js';
import { downloadLink } from './jobs.js';
import { MLOPS_CSS, errorBox, link, mapLimit } from './mlops.js';

const MAX_JSON_BYTES = 512 * 1024;  // an evaluation report bigger than this is linked, not shown
const MAX_METRIC_ROWS = 200;

// ModelMetrics members (botocore shapes ModelQuality, ModelDataQuality, Bias, Explainability) → MetricsSource members
const METRIC_SOURCES = [
  ['ModelQuality', ['Statistics', 'Constraints']],
  ['ModelDataQuality', ['Statistics', 'Constraints']],
  ['Bias', ['Report', 'PreTrainingReport', 'PostTrainingReport']],
  ['Explainability', ['Report']],
];

export function render(root, params) {
  useStyle(MLOPS_CSS);
  const state = { alive: true };
  const group = params.parts[0];
  (group ? renderGroup(root, group, state) : renderGroups(root, state)).catch((err) => {
    if (state.alive) replace(root, errorBox(err));
  });
  return () => { state.alive = false; };
}

// ---- #/registry: the groups
async function renderGroups(root, state) {
  replace(root, h('h1', {}, 'Model registry'), h('p', { class: 'loading' }, 'Loading…'));
  const groups = await listAll('ListModelPackageGroups', { SortBy: 'CreationTime', SortOrder: 'Descending' },
    'ModelPackageGroupSummaryList');
  const versions = await mapLimit(groups, 6, (g) => listAll('ListModelPackages',
    { ModelPackageGroupName: g.ModelPackageGroupName, SortBy: 'CreationTime', SortOrder: 'Descending' },
    'ModelPackageSummaryList').catch((err) => err));
  if (!state.alive) return;
  const rows = groups.map((g, i) => {
    const found = versions[i];
    const failed = found instanceof Error;
    const latest = failed ? null : found[0];
    return h('tr', { 'data-group': g.ModelPackageGroupName },
      h('td', {}, link(`#/registry/${encodeURIComponent(g.ModelPackageGroupName)}`, g.ModelPackageGroupName)),
      h('td', {}, g.ModelPackageGroupDescription || ''),
      h('td', { class: 'versions' }, failed ? `error: ${found.message}` : String(found.length)),
      h('td', {}, latest ? `v${latest.ModelPackageVersion}` : '—'),
      h('td', { class: 'latest-status' }, latest && latest.ModelApprovalStatus ? statusBadge(latest.ModelApprovalStatus) : ''),
      h('td', {}, fmtTime(g.CreationTime)));
  });
  replace(root,
    h('h1', {}, 'Model registry'),
    groups.length === 0
      ? h('p', { class: 'empty' }, 'No model package groups yet (a pipeline\'s RegisterModel step creates versions in one).')
      : h('table', { class: 'grid registry-groups' },
        h('thead', {}, h('tr', {}, ...['Group', 'Description', 'Versions', 'Latest', 'Latest approval', 'Created']
          .map((c) => h('th', {}, c)))),
        h('tbody', {}, ...rows)));
}

// ---- #/registry/<group>: its versions
async function renderGroup(root, name, state) {
  replace(root, h('h1', {}, `Model group ${name}`), h('p', { class: 'loading' }, 'Loading…'));
  const group = await sagemaker('DescribeModelPackageGroup', { ModelPackageGroupName: name });
  const summaries = await listAll('ListModelPackages',
    { ModelPackageGroupName: name, SortBy: 'CreationTime', SortOrder: 'Descending' }, 'ModelPackageSummaryList');
  const packages = await mapLimit(summaries, 6, (s) => sagemaker('DescribeModelPackage',
    { ModelPackageName: s.ModelPackageArn }).catch((err) => ({ ...s, _error: err })));
  if (!state.alive) return;
  const header = h('div', { class: 'group-header' },
    h('h1', {}, `Model group ${group.ModelPackageGroupName}`),
    h('p', {}, link('#/registry', '← all groups')),
    group.ModelPackageGroupDescription ? h('p', { class: 'description' }, group.ModelPackageGroupDescription) : null,
    fields([['ARN', group.ModelPackageGroupArn], ['Created', fmtTime(group.CreationTime)],
      ['Status', group.ModelPackageGroupStatus], ['Versions', String(summaries.length)]]));
  const cards = packages.map((p) => versionCard(p, state));
  replace(root, header, ...(cards.length ? cards : [h('p', { class: 'empty' }, 'This group has no versions.')]));
}

function versionCard(pkg, state) {
  const card = h('section', { class: 'model-version', 'data-version': String(pkg.ModelPackageVersion) });
  fillCard(card, pkg, state);
  return card;
}

function fillCard(card, pkg, state) {
  const message = h('div', { class: 'action-message', role: 'status' });
  const description = h('input', { type: 'text', class: 'approval-description', maxlength: '1024',
    placeholder: 'Approval description (optional)', 'aria-label': 'Approval description' });
  const status = pkg.ModelApprovalStatus;
  const approve = h('button', { type: 'button', class: 'approve' }, 'Approve');
  const reject = h('button', { type: 'button', class: 'reject' }, 'Reject');
  approve.disabled = status === 'Approved';
  reject.disabled = status === 'Rejected';
  const act = (target) => async () => {
    approve.disabled = reject.disabled = true;
    replace(message, `Setting ${target}…`);
    const body = { ModelPackageArn: pkg.ModelPackageArn, ModelApprovalStatus: target };
    if (description.value.trim()) body.ApprovalDescription = description.value.trim();
    try {
      await sagemaker('UpdateModelPackage', body);
      const fresh = await sagemaker('DescribeModelPackage', { ModelPackageName: pkg.ModelPackageArn });
      if (!state.alive) return;
      fillCard(card, fresh, state);
      card.querySelector('.action-message').replaceChildren(`Now ${fresh.ModelApprovalStatus}.`);
    } catch (err) {
      if (!state.alive) return;
      replace(message, errorBox(err));
      approve.disabled = pkg.ModelApprovalStatus === 'Approved';
      reject.disabled = pkg.ModelApprovalStatus === 'Rejected';
    }
  };
  approve.addEventListener('click', act('Approved'));
  reject.addEventListener('click', act('Rejected'));

  const metrics = h('div', { class: 'model-metrics' }, metricsSection(pkg, state));
  replace(card,
    h('h2', {}, `Version ${pkg.ModelPackageVersion ?? '?'} `, h('span', { class: 'approval' }, status ? statusBadge(status) : '')),
    pkg._error ? errorBox(pkg._error) : null,
    fields([
      ['Created', fmtTime(pkg.CreationTime)],
      ['Last modified', pkg.LastModifiedTime ? fmtTime(pkg.LastModifiedTime) : ''],
      ['Approval description', pkg.ApprovalDescription || ''],
      ['Package status', pkg.ModelPackageStatus || ''],
      ['Description', pkg.ModelPackageDescription || ''],
      ['ARN', pkg.ModelPackageArn],
    ]),
    pkg.ModelPackageVersion == null ? null
      : h('div', { class: 'approval-actions' }, description, approve, reject, message),
    inferenceSection(pkg.InferenceSpecification),
    metrics,
    metadataSection(pkg.CustomerMetadataProperties));
}

function fields(pairs) {
  return h('dl', { class: 'fields' }, ...pairs.filter(([, v]) => v !== '' && v != null)
    .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function inferenceSection(spec) {
  if (!spec) return null;
  const containers = spec.Containers || [];
  return h('div', { class: 'inference' },
    h('h3', {}, 'Inference'),
    h('table', { class: 'grid containers' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Image'), h('th', {}, 'Model data'))),
      h('tbody', {}, ...containers.map((c) => h('tr', {},
        h('td', { class: 'image' }, c.Image || ''),
        h('td', { class: 'model-data' }, c.ModelDataUrl || ((c.ModelDataSource || {}).S3DataSource || {}).S3Uri || ''))))),
    fields([
      ['Content types', (spec.SupportedContentTypes || []).join(', ')],
      ['Response types', (spec.SupportedResponseMIMETypes || []).join(', ')],
      ['Real-time instances', (spec.SupportedRealtimeInferenceInstanceTypes || []).join(', ')],
      ['Transform instances', (spec.SupportedTransformInstanceTypes || []).join(', ')],
    ]));
}

function metadataSection(props) {
  const entries = Object.entries(props || {});
  if (!entries.length) return null;
  return h('div', { class: 'customer-metadata' },
    h('h3', {}, 'Customer metadata'),
    h('table', { class: 'grid' }, h('tbody', {}, ...entries.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v))))));
}

function metricsSection(pkg, state) {
  const sources = [];
  for (const [family, members] of METRIC_SOURCES) {
    for (const member of members) {
      const source = ((pkg.ModelMetrics || {})[family] || {})[member];
      if (source && source.S3Uri) sources.push({ label: `${family} ${member}`, ...source });
    }
  }
  if (!sources.length) return h('p', { class: 'empty' }, 'No model metrics registered.');
  return h('div', {}, h('h3', {}, 'Model metrics'), ...sources.map((s) => {
    const values = h('div', { class: 'metric-values' });
    if (isJson(s)) loadReport(s.S3Uri, values, state);
    return h('div', { class: 'metric-source', 'data-kind': s.label },
      fields([['Kind', s.label], ['S3 URI', s.S3Uri], ['Content type', s.ContentType || '']]), values);
  }));
}

function isJson(source) {
  return /json/i.test(source.ContentType || '') || /\.json$/i.test(source.S3Uri);
}

async function loadReport(uri, target, state) {
  replace(target, 'Loading the report…');
  try {
    // the server refuses (EntityTooLarge) a bigger object before sending any of it
    const blob = await consoleBlob('s3-object', { uri, maxBytes: String(MAX_JSON_BYTES) });
    const report = JSON.parse(await blob.text());
    if (!state.alive) return;
    const rows = flatten(report).slice(0, MAX_METRIC_ROWS);
    replace(target, h('table', { class: 'grid metric-report' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Metric'), h('th', {}, 'Value'))),
      h('tbody', {}, ...rows.map(([path, value]) => h('tr', { 'data-metric': path },
        h('td', {}, path), h('td', { class: 'num' }, String(value)))))));
  } catch (err) {
    if (!state.alive) return;
    replace(target, err.code === 'EntityTooLarge'
      ? h('div', { class: 'report-too-large' }, errorBox(err, 'Too large to show here'), downloadLink(uri))
      : errorBox(err, `Could not read ${uri}`));
  }
}
