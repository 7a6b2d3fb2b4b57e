// Removing what this site may have stored in the browser: the session marker, and anything
// the page's libraries may have put in other storage. Works without Python, so the button
// works even if the page could not start.

export async function forgetEverything() {
  const steps = [
    () => localStorage.clear(),
    () => sessionStorage.clear(),
    async () => { for (const db of await indexedDB.databases()) if (db.name) await emptyDatabase(db.name); },
    async () => { for (const key of await caches.keys()) await caches.delete(key); },
    async () => {
      const root = await navigator.storage.getDirectory();
      for await (const name of root.keys()) await root.removeEntry(name, { recursive: true });
    },
    async () => { for (const r of await navigator.serviceWorker.getRegistrations()) await r.unregister(); },
  ];
  for (const step of steps) {
    try { await step(); } catch { /* a store this browser lacks or refuses: nothing in it */ }
  }
}

// PyScript opens an IndexedDB database ("IDBMap/<the interpreter's URL>@<version>") as a
// package cache while Python starts, even when, as here, it caches nothing. Once Python runs
// it is closed and not used again, so it is removed: the site keeps only the session marker.
// (PyScript's other database, "IDBMap/@pyscript.fs", stays open while the page lives; it
// holds nothing, and asking to delete an open database would stall it.)
export async function dropLibraryCaches() {
  const prefix = `IDBMap/${location.origin}/`;
  try {
    for (const db of await indexedDB.databases()) {
      if (db.name && db.name.startsWith(prefix)) await deleteDatabase(db.name);
    }
  } catch { /* no IndexedDB: nothing to drop */ }
}

function deleteDatabase(name) {
  return new Promise((resolve) => {
    const request = indexedDB.deleteDatabase(name);
    request.onsuccess = request.onerror = request.onblocked = () => resolve();
  });
}

// Emptied, not deleted: a database still held open (PyScript keeps "IDBMap/@pyscript.fs"
// open for as long as the page lives) cannot be deleted, and a pending deletion would stall
// every later opening of it.
function emptyDatabase(name) {
  return new Promise((resolve) => {
    const request = indexedDB.open(name);
    request.onerror = () => resolve();
    request.onsuccess = () => {
      const db = request.result;
      const stores = Array.from(db.objectStoreNames);
      const done = () => { db.close(); resolve(); };
      if (!stores.length) { done(); return; }
      const transaction = db.transaction(stores, 'readwrite');
      for (const store of stores) transaction.objectStore(store).clear();
      transaction.oncomplete = transaction.onerror = transaction.onabort = done;
    };
  });
}
