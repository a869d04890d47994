// Experiments: the list, an experiment's trials, and its trial components' parameters and metrics side by
// side (one column per trial component, one row per parameter and per metric, differing rows highlighted).
// Names, parameter values and metric names are attacker-controlled: shown as text only (no innerHTML).
import { sagemaker, listAll } from '../api.js';
import { fmtTime, h, replace, statusBadge, useStyle } from '../dom.js';
import { MLOPS_CSS, errorBox, link, mapLimit } from './mlops.js';

const MAX_COLUMNS = 50;
const JOB_KINDS = { SageMakerTrainingJob: 'training', SageMakerProcessingJob: 'processing',
  SageMakerTransformJob: 'transform' };

export function render(root, params) {
  useStyle(MLOPS_CSS);
  const state = { alive: true };
  const name = params.parts[0];
  const work = name ? renderExperiment(root, name, params.query, state) : renderList(root, state);
  work.catch((err) => { if (state.alive) replace(root, errorBox(err)); });
  return () => { state.alive = false; };
}

// ---- #/experiments
async function renderList(root, state) {
  replace(root, h('h1', {}, 'Experiments'), h('p', { class: 'loading' }, 'Loading…'));
  const experiments = await listAll('ListExperiments', { SortBy: 'CreationTime', SortOrder: 'Descending' },
    'ExperimentSummaries');
  if (!state.alive) return;
  replace(root, h('h1', {}, 'Experiments'), experiments.length === 0
    ? h('p', { class: 'empty' }, 'No experiments yet (a pipeline execution records one, named after its pipeline).')
    : h('table', { class: 'grid experiments' },
      h('thead', {}, h('tr', {}, ...['Experiment', 'Display name', 'Created', 'Last modified'].map((c) => h('th', {}, c)))),
      h('tbody', {}, ...experiments.map((e) => h('tr', { 'data-experiment': e.ExperimentName },
        h('td', {}, link(`#/experiments/${encodeURIComponent(e.ExperimentName)}`, e.ExperimentName)),
        h('td', {}, e.DisplayName || ''),
        h('td', {}, fmtTime(e.CreationTime)),
        h('td', {}, e.LastModifiedTime ? fmtTime(e.LastModifiedTime) : ''))))));
}

// ---- #/experiments/<name>[?trial=<trial>]
async function renderExperiment(root, name, query, state) {
  replace(root, h('h1', {}, `Experiment ${name}`), h('p', { class: 'loading' }, 'Loading…'));
  const experiment = await sagemaker('DescribeExperiment', { ExperimentName: name });
  const trials = await listAll('ListTrials', { ExperimentName: name, SortBy: 'CreationTime', SortOrder: 'Ascending' },
    'TrialSummaries');
  const members = await mapLimit(trials, 6, (t) => listAll('ListTrialComponents',
    { TrialName: t.TrialName, SortBy: 'CreationTime', SortOrder: 'Ascending' }, 'TrialComponentSummaries'));
  const chosen = query && query.get('trial');
  const byName = new Map();  // component name -> {summary, trials}
  trials.forEach((t, i) => {
    if (chosen && t.TrialName !== chosen) return;
    for (const summary of members[i]) {
      const entry = byName.get(summary.TrialComponentName) || { summary, trials: [] };
      entry.trials.push(t.TrialName);
      byName.set(summary.TrialComponentName, entry);
    }
  });
  const entries = [...byName.values()].slice(0, MAX_COLUMNS);
  const described = await mapLimit(entries, 6, (e) => sagemaker('DescribeTrialComponent',
    { TrialComponentName: e.summary.TrialComponentName }).catch((err) => ({ ...e.summary, _error: err })));
  if (!state.alive) return;
  const components = described.map((c, i) => ({ ...c, _trials: entries[i].trials }))
    .sort((a, b) => (a.StartTime || a.CreationTime || 0) - (b.StartTime || b.CreationTime || 0));

  const base = `#/experiments/${encodeURIComponent(experiment.ExperimentName)}`;
  const trialRows = trials.map((t, i) => h('tr', { 'data-trial': t.TrialName, class: t.TrialName === chosen ? 'chosen' : '' },
    h('td', {}, link(`${base}?trial=${encodeURIComponent(t.TrialName)}`, t.TrialName)),
    h('td', {}, fmtTime(t.CreationTime)),
    h('td', { class: 'num' }, String(members[i].length))));
  const onlyDiffering = h('input', { type: 'checkbox', class: 'only-differing', id: 'only-differing' });
  const table = h('div', { class: 'compare-wrap' }, compareTable(components, false));
  onlyDiffering.addEventListener('change', () => replace(table, compareTable(components, onlyDiffering.checked)));

  replace(root,
    h('h1', {}, `Experiment ${experiment.DisplayName || experiment.ExperimentName}`),
    h('p', {}, link('#/experiments', '← all experiments')),
    experiment.Description ? h('p', { class: 'description' }, experiment.Description) : null,
    h('h2', {}, 'Trials'),
    trials.length === 0 ? h('p', { class: 'empty' }, 'No trials.')
      : h('table', { class: 'grid trials' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Trial'), h('th', {}, 'Created'), h('th', {}, 'Components'))),
        h('tbody', {}, ...trialRows)),
    h('h2', {}, chosen ? `Trial components of ${chosen}` : 'Trial components'),
    h('div', { class: 'compare-controls' },
      chosen ? link(base, 'show every trial') : null,
      h('label', { for: 'only-differing' }, onlyDiffering, ' only rows that differ'),
      byName.size > MAX_COLUMNS ? h('span', {}, `showing the first ${MAX_COLUMNS} of ${byName.size}`) : null),
    components.length ? table : h('p', { class: 'empty' }, 'No trial components.'));
}

function compareTable(components, onlyDiffering) {
  const { parameters, metrics } = comparison(components);
  const head = h('tr', {}, h('th', {}, ''), ...components.map((c) => h('th', { class: 'component',
    'data-component': c.TrialComponentName }, componentHeader(c))));
  const body = [];
  const section = (title, rows, cell) => {
    const shown = onlyDiffering ? rows.filter((r) => r.differs) : rows;
    if (!shown.length) return;
    body.push(h('tr', { class: 'section' }, h('th', { colspan: String(components.length + 1) }, title)));
    for (const row of shown) {
      body.push(h('tr', { class: row.differs ? 'row differs' : 'row', 'data-row': `${title}:${row.name}` },
        h('th', { class: row.differs ? 'differs' : '' }, row.name),
        ...row.cells.map((value) => h('td', { class: [row.differs ? 'differs' : '', value == null ? 'missing' : '']
          .filter(Boolean).join(' ') }, value == null ? '—' : cell(value)))));
    }
  };
  section('Parameters', parameters, (v) => v);
  section('Metrics', metrics, (m) => [fmtNum(m.Last ?? m.Avg), h('span', { class: 'stats' },
    `min ${fmtNum(m.Min)} · max ${fmtNum(m.Max)} · avg ${fmtNum(m.Avg)} · count ${m.Count ?? '—'}`)]);
  if (!body.length) body.push(h('tr', {}, h('td', { colspan: String(components.length + 1) }, 'Nothing to compare.')));
  return h('table', { class: 'grid compare' }, h('thead', {}, head), h('tbody', {}, ...body));
}

function componentHeader(c) {
  const source = c.Source || c.TrialComponentSource || {};
  const kind = JOB_KINDS[source.SourceType];
  const title = c.DisplayName || c.TrialComponentName;
  return [
    kind ? link(`#/jobs/${kind}/${encodeURIComponent(jobName(c.TrialComponentName, kind, source.SourceArn))}`, title)
      : h('span', {}, title),
    h('div', {}, c.Status && c.Status.PrimaryStatus ? statusBadge(c.Status.PrimaryStatus) : ''),
    h('div', { class: 'stats' }, (c._trials || []).join(', ')),
    c._error ? errorBox(c._error) : null,
  ];
}

/** The job behind a ``<job>-aws-<kind>-job`` component (its name keeps the job's case; the ARN is lower case). */
function jobName(component, kind, arn) {
  const suffix = `-aws-${kind}-job`;
  if (component.endsWith(suffix)) return component.slice(0, -suffix.length);
  return (arn || '').split('/').pop();
}

/**
 * The rows of the comparison (pure): one per parameter and one per metric, each with one cell per
 * component (null where the component lacks it) and ``differs`` when the cells are not all equal.
 */
export function comparison(components) {
  const paramNames = new Set();
  const metricNames = new Set();
  for (const c of components) {
    Object.keys(c.Parameters || {}).forEach((k) => paramNames.add(k));
    (c.Metrics || []).forEach((m) => metricNames.add(m.MetricName));
  }
  const parameters = [...paramNames].sort().map((name) => {
    const cells = components.map((c) => {
      const p = (c.Parameters || {})[name];
      if (!p) return null;
      return p.NumberValue !== undefined ? fmtNum(p.NumberValue) : String(p.StringValue ?? '');
    });
    return { name, cells, differs: new Set(cells.map((v) => v ?? '\u0000')).size > 1 };
  });
  const metrics = [...metricNames].sort().map((name) => {
    const cells = components.map((c) => (c.Metrics || []).find((m) => m.MetricName === name) || null);
    const keys = cells.map((m) => (m ? fmtNum(m.Last ?? m.Avg) : '\u0000'));
    return { name, cells, differs: new Set(keys).size > 1 };
  });
  return { parameters, metrics };
}

function fmtNum(value) {
  if (value === undefined || value === null) return '—';
  if (typeof value !== 'number') return String(value);
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
}
