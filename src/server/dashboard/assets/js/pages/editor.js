// The receptionist editor in four steps: 1 basic information, 2 disclosures and call handling
// (routing and interviewers), 3 custom context, 4 screening questions. The API validates; its
// message is shown beside the field it names (`intro_message`, `questions[2].text`, ...) and the
// editor opens the step that field is on.

import { html, useState, useEffect, useRef } from '../lib.js';
import { get, post, put, seg } from '../api.js';
import { Badge, Spinner, ErrorNote, FieldError, Icon, toast, useSession, ActionButton } from '../ui.js';
import { KIND_LABELS } from '../format.js';

const VOICES = [
  ['slt', 'slt (US English, female)'],
  ['kal16', 'kal16 (US English, male)'],
  ['rms', 'rms (US English, male)'],
  ['awb', 'awb (Scottish English, male)'],
  ['kal', 'kal (US English, male, 8 kHz)'],
];
const MAX_INTRO = 800;
const MAX_CONTEXT = 20000;

const STEPS = [
  { n: 1, title: 'Basic information' },
  { n: 2, title: 'Disclosures & call handling' },
  { n: 3, title: 'Custom context' },
  { n: 4, title: 'Questions' },
];

/** Which step shows `field`. */
function stepOf(field) {
  if (!field) return null;
  if (/^(phone_number|agent_name|voice|carrier|intro_message|language_mode)$/.test(field)) return 1;
  if (field === 'custom_context') return 3;
  if (field.startsWith('questions')) return 4;
  return 2;
}

const CARRIERS = [
  ['twilio', 'Twilio'],
  ['telnyx', 'Telnyx'],
  ['plivo', 'Plivo'],
  ['vonage', 'Vonage'],
  ['signalwire', 'SignalWire'],
  ['exotel', 'Exotel'],
];

const BLANK = {
  phone_number: '',
  agent_name: '',
  voice: 'slt',
  carrier: 'twilio',
  intro_message: '',
  language_mode: 'english',
  disclose_ai: true,
  disclose_recording: true,
  disclose_e_verify: true,
  collect_location: true,
  enforce_job_location_match: false,
  manual_approval: false,
  sms_confirmation: true,
  score_threshold: 70,
  interviewer_ids: [],
  default_interviewer_id: '',
  custom_context: '',
  questions: [],
  status: 'live',
};

let questionKey = 0;
const withKey = (q) => ({ ...q, key: ++questionKey });

function fromApi(r) {
  const f = {};
  for (const k of Object.keys(BLANK)) f[k] = r[k] === undefined || r[k] === null ? BLANK[k] : r[k];
  f.questions = (r.questions || []).map((q) =>
    withKey({ text: q.text, kind: q.kind, expected: q.expected || '', weight: q.weight, dealbreaker: q.dealbreaker }),
  );
  return f;
}

function toApi(f) {
  const threshold = String(f.score_threshold).trim();
  return {
    phone_number: f.phone_number,
    agent_name: f.agent_name,
    voice: f.voice,
    carrier: f.carrier,
    intro_message: f.intro_message,
    language_mode: f.language_mode,
    disclose_ai: f.disclose_ai,
    disclose_recording: f.disclose_recording,
    disclose_e_verify: f.disclose_e_verify,
    collect_location: f.collect_location,
    enforce_job_location_match: f.enforce_job_location_match,
    manual_approval: f.manual_approval,
    sms_confirmation: f.sms_confirmation,
    // an empty box keeps the current value; anything else goes as typed for the API to judge
    score_threshold: threshold === '' ? null : Number(threshold),
    interviewer_ids: f.interviewer_ids,
    default_interviewer_id: f.default_interviewer_id || '',
    custom_context: f.custom_context,
    questions: f.questions.map((q) => ({
      text: q.text,
      kind: q.kind,
      expected: q.expected.trim() ? q.expected : null,
      weight: String(q.weight).trim() === '' ? 1 : Number(q.weight),
      dealbreaker: q.dealbreaker,
    })),
  };
}

export function Editor({ id }) {
  const { canWrite } = useSession();
  const [form, setForm] = useState(id ? null : { ...BLANK });
  const [saved, setSaved] = useState(null);
  const [interviewers, setInterviewers] = useState([]);
  const [step, setStepState] = useState(1);
  // a new receptionist can be created from any step once its last step has been seen
  const [reachedLast, setReachedLast] = useState(Boolean(id));
  const setStep = (n) => {
    setStepState(n);
    if (n === STEPS.length) setReachedLast(true);
  };
  const [error, setError] = useState(null);
  const [loadError, setLoadError] = useState(null);
  const top = useRef(null);

  useEffect(() => {
    get('/api/v1/interviewers').then((r) => setInterviewers(r.data), () => {});
    if (!id) return;
    get(`/api/v1/receptionists/${seg(id)}`).then(
      (r) => {
        setSaved(r);
        setForm(fromApi(r));
      },
      setLoadError,
    );
  }, [id]);

  // a field's error goes once the field changes
  const update = (patchObj, field) => {
    setForm((f) => ({ ...f, ...patchObj }));
    if (error && (field === undefined || error.field === field || (field && error.field && error.field.startsWith(field)))) setError(null);
  };

  const save = async () => {
    setError(null);
    try {
      const body = toApi(form);
      const r = id ? await put(`/api/v1/receptionists/${seg(id)}`, body) : await post('/api/v1/receptionists', body);
      setSaved(r);
      setForm(fromApi(r));
      toast(id ? 'Saved' : `${r.agent_name} created`);
      if (!id) location.hash = `#/receptionists/${seg(r.id)}`;
    } catch (e) {
      setError(e);
      const s = stepOf(e.field);
      if (s) setStep(s);
      if (top.current) top.current.scrollIntoView({ block: 'start' });
      // the field in error, once its step is shown
      setTimeout(() => {
        const el = document.querySelector('[data-field-error]');
        if (el) el.scrollIntoView({ block: 'center' });
        const input = el && el.parentElement && el.parentElement.querySelector('input, textarea, select');
        if (input) input.focus();
      }, 0);
    }
  };

  const setStatus = async (status) => {
    const r = await put(`/api/v1/receptionists/${seg(id)}`, { status });
    setSaved(r);
    setForm((f) => ({ ...f, status: r.status }));
    toast(status === 'live' ? 'Live: it answers calls' : 'Inactive: callers hear a closed message');
  };

  if (loadError)
    return html`<div class="page">
      <a class="back" href="#/receptionists"><${Icon} name="back" size=${16} /> Receptionists</a>
      <${ErrorNote} error=${loadError.status === 404 ? { message: 'No such receptionist.' } : loadError} />
    </div>`;
  if (!form) return html`<div class="page"><${Spinner} /></div>`;

  const title = id ? (saved ? saved.agent_name : 'Receptionist') : 'New receptionist';
  const general = error && !error.field ? error : error && stepOf(error.field) === null ? error : null;
  const props = { form, update, error, interviewers, readOnly: !canWrite };

  return html`<div class="page editor" ref=${top}>
    <a class="back" href="#/receptionists"><${Icon} name="back" size=${16} /> Receptionists</a>
    <div class="page-head">
      <div>
        <h1>${title}</h1>
        ${saved
          ? html`<div class="meta">
              <${Badge} tone=${saved.status === 'live' ? 'good' : 'muted'}>${saved.status === 'live' ? 'Live' : 'Inactive'}</${Badge}>
              <span class="mono">${saved.phone_number}</span>
            </div>`
          : html`<p class="muted">Four short steps; you can move between them freely and create at the end.</p>`}
      </div>
      ${canWrite && saved
        ? html`<div class="head-actions">
            ${saved.status === 'live'
              ? html`<${ActionButton} class="button" data-mutates onClick=${() => setStatus('inactive')}>Deactivate</${ActionButton}>`
              : html`<${ActionButton} class="button good" data-mutates onClick=${() => setStatus('live')}>Activate</${ActionButton}>`}
            <a class="button ghost" href=${`#/try/${seg(saved.id)}`} data-mutates><${Icon} name="mic" size=${16} /> Try it</a>
          </div>`
        : null}
    </div>

    <ol class="stepper">
      ${STEPS.map(
        (s) => html`<li key=${s.n}>
          <button
            type="button"
            class=${`step${step === s.n ? ' active' : ''}${error && stepOf(error.field) === s.n ? ' has-error' : ''}`}
            aria-current=${step === s.n ? 'step' : undefined}
            onClick=${() => setStep(s.n)}
          >
            <span class="n">${s.n}</span><span class="t">${s.title}</span>
          </button>
        </li>`,
      )}
    </ol>

    <${ErrorNote} error=${general} />
    <form class="card form" onSubmit=${(e) => { e.preventDefault(); if (canWrite) save(); }} novalidate>
      <fieldset disabled=${!canWrite} class="plain">
        ${step === 1 ? html`<${StepBasics} ...${props} />` : null}
        ${step === 2 ? html`<${StepHandling} ...${props} />` : null}
        ${step === 3 ? html`<${StepContext} ...${props} />` : null}
        ${step === 4 ? html`<${StepQuestions} ...${props} />` : null}
      </fieldset>
      <div class="form-actions">
        ${step > 1 ? html`<button type="button" class="button ghost" onClick=${() => setStep(step - 1)}>Back</button>` : html`<span></span>`}
        <div class="right">
          ${step < 4
            ? html`<button type="button" class=${`button${id || reachedLast ? ' ghost' : ' primary'}`} onClick=${() => setStep(step + 1)}>Next</button>`
            : null}
          ${canWrite && (id || reachedLast)
            ? html`<${ActionButton} class="button primary" data-mutates onClick=${save}>${id ? 'Save changes' : 'Create receptionist'}</${ActionButton}>`
            : null}
        </div>
      </div>
    </form>
  </div>`;
}

function Field({ label, hint, field, error, children, counter }) {
  return html`<div class=${`field${error && error.field === field ? ' invalid' : ''}`} data-field=${field}>
    <label>
      <span class="label">${label}${counter ? html`<span class="counter">${counter}</span>` : null}</span>
      ${children}
    </label>
    ${hint ? html`<div class="hint">${hint}</div>` : null}
    <${FieldError} error=${error} field=${field} />
  </div>`;
}

function Toggle({ label, hint, checked, onChange, field, error }) {
  return html`<div class="toggle-row" data-field=${field}>
    <label class="toggle">
      <input type="checkbox" name=${field} checked=${checked} onChange=${(e) => onChange(e.target.checked)} />
      <span class="switch" aria-hidden="true"></span>
      <span>
        <span class="label">${label}</span>
        ${hint ? html`<span class="hint">${hint}</span>` : null}
      </span>
    </label>
    <${FieldError} error=${error} field=${field} />
  </div>`;
}

function StepBasics({ form, update, error }) {
  const introLen = [...form.intro_message].length;
  return html`<h2>1. Basic information</h2>
    <div class="grid2">
      <${Field} label="Phone number" field="phone_number" error=${error} hint="The inbound number in E.164 form, e.g. +15550001111. Calls to it reach this receptionist.">
        <input name="phone_number" inputmode="tel" autocomplete="off" value=${form.phone_number} aria-invalid=${error && error.field === 'phone_number' ? 'true' : undefined}
          onInput=${(e) => update({ phone_number: e.target.value }, 'phone_number')} />
      </${Field}>
      <${Field} label="Agent name" field="agent_name" error=${error} hint="How the agent introduces itself.">
        <input name="agent_name" value=${form.agent_name} aria-invalid=${error && error.field === 'agent_name' ? 'true' : undefined}
          onInput=${(e) => update({ agent_name: e.target.value }, 'agent_name')} />
      </${Field}>
    </div>
    <${Field} label="Voice" field="voice" error=${error}>
      <select name="voice" value=${form.voice} onChange=${(e) => update({ voice: e.target.value }, 'voice')}>
        ${VOICES.map(([v, l]) => html`<option value=${v}>${l}</option>`)}
        ${VOICES.some(([v]) => v === form.voice) ? null : html`<option value=${form.voice}>${form.voice}</option>`}
      </select>
    </${Field}>
    <${Field} label="Carrier" field="carrier" error=${error} hint="Where the number is hosted; point its voice webhook at /{carrier}/voice.">
      <select name="carrier" value=${form.carrier} onChange=${(e) => update({ carrier: e.target.value }, 'carrier')}>
        ${CARRIERS.map(([v, l]) => html`<option value=${v}>${l}</option>`)}
      </select>
    </${Field}>
    <${Field} label="Intro message" field="intro_message" error=${error} counter=${`${introLen} / ${MAX_INTRO}`}
      hint="The opening line, e.g. “Hi, I'm Chloe from ABC Staffing. Thanks for calling about our warehouse jobs.”">
      <textarea name="intro_message" rows="3" value=${form.intro_message} aria-invalid=${error && error.field === 'intro_message' ? 'true' : undefined}
        onInput=${(e) => update({ intro_message: e.target.value }, 'intro_message')}></textarea>
    </${Field}>
    <fieldset class="field choices" data-field="language_mode">
      <legend class="label">Language</legend>
      <label class="choice"><input type="radio" name="language_mode" value="english" checked=${form.language_mode === 'english'}
        onChange=${() => update({ language_mode: 'english' }, 'language_mode')} /> English</label>
      <label class="choice"><input type="radio" name="language_mode" value="multilingual" checked=${form.language_mode === 'multilingual'}
        onChange=${() => update({ language_mode: 'multilingual' }, 'language_mode')} /> Multilingual <span class="muted small">(answers in the caller's language)</span></label>
      <${FieldError} error=${error} field="language_mode" />
    </fieldset>`;
}

function StepHandling({ form, update, error, interviewers }) {
  const t = (field, label, hint) =>
    html`<${Toggle} field=${field} label=${label} hint=${hint} error=${error} checked=${form[field]} onChange=${(v) => update({ [field]: v }, field)} />`;
  const chosen = form.interviewer_ids;
  const toggleInterviewer = (id, on) => {
    const ids = on ? [...chosen, id] : chosen.filter((x) => x !== id);
    const patchObj = { interviewer_ids: ids };
    if (!ids.includes(form.default_interviewer_id)) patchObj.default_interviewer_id = '';
    update(patchObj, 'interviewer_ids');
  };
  const names = Object.fromEntries(interviewers.map((i) => [i.id, i.name]));
  const interviewersError = error && error.field && error.field.startsWith('interviewer_ids') ? error : null;
  return html`<h2>2. Disclosures & call handling</h2>
    <h3>Disclosures <span class="muted small">spoken before any question; callers cannot interrupt them</span></h3>
    ${t('disclose_ai', 'Say that the agent is an AI')}
    ${t('disclose_recording', 'Say that the call is recorded')}
    ${t('disclose_e_verify', 'Say that the company participates in E-Verify')}
    <h3>Call handling</h3>
    ${t('collect_location', "Ask the caller's city or location")}
    ${t('enforce_job_location_match', "Only suggest jobs that match the caller's location")}
    ${t('sms_confirmation', 'Text the caller to confirm the details captured', 'Off: callers count as confirmed at once.')}
    ${t('manual_approval', 'Manual approval', 'On: every evaluated caller waits in Needs Review. Off: routed by score.')}
    <${Field} label="Score threshold (0-100)" field="score_threshold" error=${error}
      hint=${form.manual_approval ? 'Used when manual approval is off.' : 'A score at or above this with no failed dealbreaker is approved and ingested into the default interviewer; anything else is rejected.'}>
      <input name="score_threshold" type="number" inputmode="numeric" min="0" max="100" step="1" class="short" value=${form.score_threshold}
        aria-invalid=${error && error.field === 'score_threshold' ? 'true' : undefined}
        onInput=${(e) => update({ score_threshold: e.target.value }, 'score_threshold')} />
    </${Field}>
    <h3>Interviewers <span class="muted small">where candidates of this receptionist may be ingested</span></h3>
    ${interviewers.length
      ? html`<div class="checks" data-field="interviewer_ids">
          ${interviewers.map(
            (i) => html`<label class="choice" key=${i.id}>
              <input type="checkbox" name="interviewer_ids" value=${i.id} checked=${chosen.includes(i.id)} onChange=${(e) => toggleInterviewer(i.id, e.target.checked)} />
              ${i.name}
            </label>`,
          )}
        </div>`
      : html`<p class="muted">No interviewers in this workspace yet (Settings → Interviewers).</p>`}
    ${chosen.filter((id) => !names[id]).map((id) => html`<p class="muted small">Unknown interviewer ${id}</p>`)}
    ${interviewersError ? html`<div class="field-error" role="alert" data-field-error=${interviewersError.field}>${interviewersError.message}</div>` : null}
    <${Field} label="Default interviewer" field="default_interviewer_id" error=${error} hint="Automatically approved candidates are ingested here.">
      <select name="default_interviewer_id" value=${form.default_interviewer_id || ''}
        onChange=${(e) => update({ default_interviewer_id: e.target.value }, 'default_interviewer_id')}>
        <option value="">None</option>
        ${chosen.map((id) => html`<option value=${id}>${names[id] || id}</option>`)}
      </select>
    </${Field}>`;
}

function StepContext({ form, update, error }) {
  return html`<h2>3. Custom context</h2>
    <${Field} label="What the agent may tell callers" field="custom_context" error=${error}
      counter=${`${[...form.custom_context].length} / ${MAX_CONTEXT}`}
      hint="Open positions, shifts, pay, benefits, addresses, company background, and edge cases (“already applied: expect a reply within 3 days”). The agent answers callers' questions from this text only.">
      <textarea name="custom_context" rows="14" value=${form.custom_context}
        aria-invalid=${error && error.field === 'custom_context' ? 'true' : undefined}
        onInput=${(e) => update({ custom_context: e.target.value }, 'custom_context')}></textarea>
    </${Field}>`;
}

const EXPECTED_HINT = {
  yes_no: 'yes or no',
  number: 'e.g. >= 18, 2, or 18-65',
  free_text: 'keywords, comma-separated',
};

function StepQuestions({ form, update, error, readOnly }) {
  const qs = form.questions;
  const set = (i, patchObj, sub) => update({ questions: qs.map((q, j) => (j === i ? { ...q, ...patchObj } : q)) }, `questions[${i}].${sub}`);
  const move = (i, d) => {
    const next = [...qs];
    [next[i], next[i + d]] = [next[i + d], next[i]];
    update({ questions: next }, 'questions');
  };
  const remove = (i) => update({ questions: qs.filter((_, j) => j !== i) }, 'questions');
  const add = () => update({ questions: [...qs, withKey({ text: '', kind: 'yes_no', expected: '', weight: 1, dealbreaker: false })] }, 'questions');
  const f = (i, name) => `questions[${i}].${name}`;
  const bad = (i, name) => (error && error.field === f(i, name) ? 'true' : undefined);
  return html`<h2>4. Screening questions</h2>
    <p class="muted">Asked in this order. Unclear answers are asked again (at most twice); keypad 1 = yes, 2 = no.</p>
    <${FieldError} error=${error} field="questions" />
    <ol class="questions">
      ${qs.map(
        (q, i) => html`<li class="question card" key=${q.key} data-question=${i}>
          <div class="q-head">
            <span class="q-n">Q${i + 1}</span>
            ${readOnly
              ? null
              : html`<div class="q-tools">
                  <button type="button" class="icon-button" aria-label=${`Move question ${i + 1} up`} disabled=${i === 0} onClick=${() => move(i, -1)}><${Icon} name="up" size=${16} /></button>
                  <button type="button" class="icon-button" aria-label=${`Move question ${i + 1} down`} disabled=${i === qs.length - 1} onClick=${() => move(i, 1)}><${Icon} name="down" size=${16} /></button>
                  <button type="button" class="icon-button danger" aria-label=${`Remove question ${i + 1}`} onClick=${() => remove(i)}><${Icon} name="trash" size=${16} /></button>
                </div>`}
          </div>
          <${Field} label="Question" field=${f(i, 'text')} error=${error}>
            <input name=${f(i, 'text')} value=${q.text} aria-invalid=${bad(i, 'text')} onInput=${(e) => set(i, { text: e.target.value }, 'text')} />
          </${Field}>
          <div class="grid3">
            <${Field} label="Kind" field=${f(i, 'kind')} error=${error}>
              <select name=${f(i, 'kind')} value=${q.kind} onChange=${(e) => set(i, { kind: e.target.value }, 'kind')}>
                ${Object.entries(KIND_LABELS).map(([k, l]) => html`<option value=${k}>${l}</option>`)}
              </select>
            </${Field}>
            <${Field} label="Expected answer" field=${f(i, 'expected')} error=${error}>
              <input name=${f(i, 'expected')} value=${q.expected} placeholder=${EXPECTED_HINT[q.kind]} aria-invalid=${bad(i, 'expected')}
                onInput=${(e) => set(i, { expected: e.target.value }, 'expected')} />
            </${Field}>
            <${Field} label="Weight" field=${f(i, 'weight')} error=${error}>
              <input name=${f(i, 'weight')} type="number" min="0" step="0.5" class="short" value=${q.weight} aria-invalid=${bad(i, 'weight')}
                onInput=${(e) => set(i, { weight: e.target.value }, 'weight')} />
            </${Field}>
          </div>
          <${Toggle} field=${f(i, 'dealbreaker')} label="Dealbreaker" hint="A failed answer is flagged and the candidate is not approved automatically."
            error=${error} checked=${q.dealbreaker} onChange=${(v) => set(i, { dealbreaker: v }, 'dealbreaker')} />
        </li>`,
      )}
    </ol>
    ${qs.length ? null : html`<p class="muted">No questions: the agent takes the name${form.collect_location ? ' and location' : ''}, answers questions and closes.</p>`}
    ${readOnly ? null : html`<button type="button" class="button ghost" onClick=${add} disabled=${qs.length >= 20}><${Icon} name="plus" size=${16} /> Add question</button>`}`;
}
