// Display helpers: dates, durations and the API's enums in a recruiter's words.

const dateTime = new Intl.DateTimeFormat(undefined, {
  day: 'numeric',
  month: 'short',
  year: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
});
const dateOnly = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

export function fmtDateTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '—' : dateTime.format(d);
}

/** "Today 14:03", "Yesterday 09:10", "12 Mar 14:03" or with the year when not this year. */
export function fmtWhen(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  const now = new Date();
  const days = Math.round((startOfDay(now) - startOfDay(d)) / 86400000);
  if (days === 0 || days === 1) {
    const word = relative.format(-days, 'day');
    return `${word.charAt(0).toUpperCase()}${word.slice(1)} ${timeOnly.format(d)}`;
  }
  if (d.getFullYear() === now.getFullYear()) return `${dateOnly.format(d)} ${timeOnly.format(d)}`;
  return dateTime.format(d);
}

function startOfDay(d) {
  return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
}

/** 72856 → "1:13"; 3723000 → "1:02:03". */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  return fmtClock(ms / 1000);
}

export function fmtClock(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) seconds = 0;
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${r}` : `${m}:${r}`;
}

export function fmtScore(score) {
  return score === null || score === undefined ? '—' : String(Math.round(score));
}

export const STATUS_LABELS = {
  awaiting_confirmation: 'Awaiting confirmation',
  confirmed: 'Confirmed',
  processing: 'Processing',
  evaluated: 'Evaluated',
};

export const REVIEW_LABELS = {
  needs_review: 'Needs review',
  approved: 'Approved',
  rejected: 'Rejected',
};

/** The one label a row shows: the decision once there is one, else the pipeline status. */
export function candidateState(c) {
  if (c.ingested) return { label: 'Ingested', tone: 'good' };
  if (c.review === 'approved') return { label: 'Approved', tone: 'good' };
  if (c.review === 'rejected') return { label: 'Rejected', tone: 'bad' };
  if (c.review === 'needs_review') return { label: 'Needs review', tone: 'warn' };
  return { label: STATUS_LABELS[c.status] || c.status, tone: c.status === 'evaluated' ? 'info' : 'muted' };
}

export const END_REASONS = {
  completed: 'Completed',
  caller_hangup: 'Caller hung up',
  disconnected: 'Disconnected',
  silence: 'Silence',
  max_duration: 'Time limit',
  backend_failure: 'Speech service failure',
  protocol_error: 'Protocol error',
  server_interrupted: 'Server interrupted',
  server_shutdown: 'Server shut down',
};

export const KIND_LABELS = { yes_no: 'Yes / no', number: 'Number', free_text: 'Free text' };

/** What an answer's value reads as. */
export function fmtAnswer(value) {
  if (!value) return '—';
  switch (value.type) {
    case 'yes':
      return 'Yes';
    case 'no':
      return 'No';
    case 'number':
      return String(value.value);
    case 'text':
      return value.value;
    case 'unclear':
      return 'Unclear';
    default:
      return String(value.type);
  }
}

/** "question_2" → "Question 2", "caller_questions" → "Caller's questions". */
export function fmtStep(step) {
  const names = {
    intro: 'Intro',
    disclosures: 'Disclosures',
    name: 'Name',
    location: 'Location',
    caller_questions: "Caller's questions",
    completed: 'Completed',
    unknown: 'Unknown',
  };
  if (names[step]) return names[step];
  const m = /^question_(\d+)$/.exec(step);
  return m ? `Question ${m[1]}` : step;
}

/** A role for display. */
export const roleLabel = (role) => (role === 'admin' ? 'Admin' : 'Viewer');
