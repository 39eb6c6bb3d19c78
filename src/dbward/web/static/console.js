// Live activity: new audit records arrive as server-sent events and are added on top.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("activity");
  if (!table) return;
  const body = table.querySelector("tbody");
  const source = new EventSource(table.dataset.stream);
  source.addEventListener("record", (event) => {
    const r = JSON.parse(event.data);
    const data = r.data || {};
    const row = document.createElement("tr");
    row.dataset.id = r.id;
    row.className = "fresh decision-" + (data.decision || "none");
    const cells = [r.time, r.kind, r.identity || "-", r.connection || "-", r.session_id || "",
                   data.decision || "", data.statement || data.reason || ""];
    cells.forEach((text, i) => {
      const cell = document.createElement("td");
      if (i === 4 && text) {
        const link = document.createElement("a");
        link.href = "/console/sessions/" + encodeURIComponent(text);
        link.textContent = text;
        cell.appendChild(link);
      } else {
        cell.textContent = text;
      }
      if (i === 6) cell.className = "sql";
      row.appendChild(cell);
    });
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > 200) body.deleteRow(body.rows.length - 1);
  });
});
